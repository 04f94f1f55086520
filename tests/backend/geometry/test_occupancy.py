"""Occupancy grid: the occupied box, point lookups and the dilation margin."""

from __future__ import annotations

import torch

from backend.geometry.occupancy import Occupancy, OccupancyConfig, occupied_cells


def _one_cell(c: int, z: int, y: int, x: int) -> torch.Tensor:
    cells = torch.zeros(c, c, c, dtype=torch.bool)
    cells[z, y, x] = True
    return cells


def test_box_and_lookup_of_one_occupied_cell():
    # 4 cells of 0.5 over [-1, 1]; cell (z=0, y=1, x=3) spans x [0.5, 1], y [-0.5, 0], z [-1, -0.5].
    occupancy = Occupancy(_one_cell(4, 0, 1, 3), low=-1.0, cell_size=0.5)
    low, high = occupancy.box(1.0)
    assert torch.allclose(low, torch.tensor([0.5, -0.5, -1.0]))
    assert torch.allclose(high, torch.tensor([1.0, 0.0, -0.5]))
    points = torch.tensor([[0.75, -0.25, -0.75], [0.25, -0.25, -0.75], [1.5, -0.25, -0.75]])
    assert occupancy.contains(points).tolist() == [True, False, False]


def test_box_is_clipped_to_the_cube_and_none_when_empty():
    occupancy = Occupancy(_one_cell(2, 1, 1, 1), low=-1.0, cell_size=1.2)
    assert torch.allclose(occupancy.box(1.0)[1], torch.ones(3))
    assert Occupancy(torch.zeros(2, 2, 2, dtype=torch.bool), -1.0, 1.0).box(1.0) is None


def test_dilation_marks_the_neighbouring_cells():
    density = torch.zeros(5, 5, 5)
    density[2, 2, 2] = 1.0
    config = OccupancyConfig(threshold=0.5, dilation=1)
    cells = occupied_cells(density, config)
    assert cells[1:4, 1:4, 1:4].all() and cells.sum() == 27
    assert occupied_cells(density, OccupancyConfig(threshold=0.5, dilation=0)).sum() == 1
