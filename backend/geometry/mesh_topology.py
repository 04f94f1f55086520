"""Neighbourhoods of a triangle mesh and the quantities built on them: the face across each
edge, the unique edges, area-weighted vertex normals. Pure torch, differentiable where the
positions are."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def face_neighbours(faces: torch.Tensor) -> torch.Tensor:
    """[F, 3] faces -> [F, 3] int64: the face across edge k (the edge opposite corner k), -1 on
    a boundary edge or an edge shared by more than two faces."""
    f = len(faces)
    a = faces[:, [1, 2, 0]]
    b = faces[:, [2, 0, 1]]
    lo, hi = torch.minimum(a, b).reshape(-1), torch.maximum(a, b).reshape(-1)
    key = lo * (int(faces.max()) + 1 if f else 1) + hi  # [3F] undirected edge id
    order = torch.argsort(key)
    sorted_key = key[order]
    same_next = torch.zeros_like(sorted_key, dtype=torch.bool)
    same_next[:-1] = sorted_key[1:] == sorted_key[:-1]
    # An edge held by exactly two faces equals its next entry, and neither the entry after
    # that nor the one before it.
    pair = same_next.clone()
    pair[:-1] &= ~same_next[1:]
    pair[1:] &= ~same_next[:-1]
    where = pair.nonzero()[:, 0]
    first, second = order[where], order[where + 1]
    neighbours = torch.full((3 * f,), -1, dtype=torch.long, device=faces.device)
    neighbours[first] = second // 3
    neighbours[second] = first // 3
    return neighbours.view(f, 3)


def unique_edges(faces: torch.Tensor) -> torch.Tensor:
    """[F, 3] faces -> [E, 2] int64 undirected edges (lower index first), each once."""
    a = faces[:, [1, 2, 0]].reshape(-1)
    b = faces[:, [2, 0, 1]].reshape(-1)
    return torch.unique(torch.stack([torch.minimum(a, b), torch.maximum(a, b)], -1), dim=0)


def face_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """[F, 3] unnormalised face normals (v1 - v0) x (v2 - v0), length twice the face area."""
    v = vertices[faces]
    return torch.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], dim=-1)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """[V, 3] unit vertex normals: the area-weighted sum of the normals of the faces around
    each vertex."""
    n = face_normals(vertices, faces)
    summed = torch.zeros_like(vertices).index_add(0, faces.reshape(-1), n.repeat_interleave(3, 0))
    return F.normalize(summed, dim=-1)
