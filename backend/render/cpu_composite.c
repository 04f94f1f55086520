/* Shading and alpha compositing of R rays of S samples, and the gradient back to the samples'
 * density, albedo and normal: the CPU kernel of backend/render/cpu_composite.py, which says
 * what it computes (backend/cpu_build.py builds it on first use). Arrays are contiguous:
 * per sample [R, S] or [R, S, 3], per ray [R] or [R, 3]. */
#include <math.h>
#include <stdint.h>

#define COMPOSITE(T, EXP, SQRT, SUFFIX)                                                       \
    /* The lit intensity ambient + diffuse max(0, n . l) at a sample; l (out) the unit vector \
     * toward the light (its length floored at 1e-12, as F.normalize), and whether the        \
     * gradient passes the max: n . l >= 0, as torch.clamp's (a zero normal passes it). */    \
    static inline T intensity_##SUFFIX(const T *n, const T *p, const T *light, T ambient,     \
                                       T diffuse, T *l, int *lit) {                           \
        l[0] = light[0] - p[0];                                                               \
        l[1] = light[1] - p[1];                                                               \
        l[2] = light[2] - p[2];                                                               \
        T length = SQRT(l[0] * l[0] + l[1] * l[1] + l[2] * l[2]);                             \
        length = length > (T)1e-12 ? length : (T)1e-12;                                       \
        l[0] /= length;                                                                       \
        l[1] /= length;                                                                       \
        l[2] /= length;                                                                       \
        const T cosine = n[0] * l[0] + n[1] * l[1] + n[2] * l[2];                             \
        *lit = cosine >= 0;                                                                   \
        return ambient + diffuse * (cosine > 0 ? cosine : (T)0);                              \
    }                                                                                         \
                                                                                              \
    /* The shaded colour c of a sample (unlit: its albedo; white: the intensity in grey). */  \
    static inline void shade_##SUFFIX(const T *a, T intensity, int unlit, int white, T *c) {  \
        for (int q = 0; q < 3; ++q)                                                           \
            c[q] = unlit ? a[q] : (white ? intensity : a[q] * intensity);                     \
    }                                                                                         \
                                                                                              \
    void composite_forward_##SUFFIX(                                                          \
        const T *sigma, const T *albedo, const T *normal, const T *depth, const T *delta,     \
        const T *points, const T *dirs, const T *light, const uint8_t *unlit,                 \
        const uint8_t *white, int64_t R, int64_t S, T ambient, T diffuse, T *colour,          \
        T *opacity, T *depth_out, T *normal_out, T *orientation, int threads) {               \
        _Pragma("omp parallel for num_threads(threads) schedule(static)")                     \
        for (int64_t r = 0; r < R; ++r) {                                                     \
            const T *d = dirs + 3 * r;                                                        \
            T transmittance = 1, sc[3] = {0, 0, 0}, sn[3] = {0, 0, 0};                        \
            T so = 0, sd = 0, sf = 0;                                                         \
            for (int64_t i = 0; i < S; ++i) {                                                 \
                const int64_t k = r * S + i;                                                  \
                const T *n = normal + 3 * k;                                                  \
                const T e = EXP(-sigma[k] * delta[k]);                                        \
                const T w = transmittance * ((T)1 - e);                                       \
                transmittance *= e;                                                           \
                T l[3], c[3];                                                                 \
                int lit;                                                                      \
                const T in = intensity_##SUFFIX(n, points + 3 * k, light + 3 * r, ambient,    \
                                                diffuse, l, &lit);                            \
                shade_##SUFFIX(albedo + 3 * k, in, unlit[r], white[r], c);                    \
                T facing = n[0] * d[0] + n[1] * d[1] + n[2] * d[2];                           \
                facing = facing > 0 ? facing : (T)0;                                          \
                for (int q = 0; q < 3; ++q) {                                                 \
                    sc[q] += w * c[q];                                                        \
                    sn[q] += w * n[q];                                                        \
                }                                                                             \
                so += w;                                                                      \
                sd += w * depth[k];                                                           \
                sf += w * facing * facing;                                                    \
            }                                                                                 \
            for (int q = 0; q < 3; ++q) {                                                     \
                colour[3 * r + q] = sc[q];                                                    \
                normal_out[3 * r + q] = sn[q];                                                \
            }                                                                                 \
            opacity[r] = so;                                                                  \
            depth_out[r] = sd;                                                                \
            orientation[r] = sf;                                                              \
        }                                                                                     \
    }                                                                                         \
                                                                                              \
    /* The gradients of the per-ray outputs (g_colour [R, 3], g_opacity [R], g_depth [R],     \
     * g_normal [R, 3], g_orientation [R]) taken back to sigma [R, S], albedo and normal      \
     * [R, S, 3]. One pass forward per ray recomputes w_i, T_{i+1} and the loss's derivative  \
     * in w_i, G_i; one pass backward adds the suffix sums of w_j G_j (j > i). Thread th      \
     * takes the th-th of `threads` equal runs of rays, with scratch[3 S th ..] its own. */   \
    void composite_backward_##SUFFIX(                                                         \
        const T *sigma, const T *albedo, const T *normal, const T *depth, const T *delta,     \
        const T *points, const T *dirs, const T *light, const uint8_t *unlit,                 \
        const uint8_t *white, int64_t R, int64_t S, T ambient, T diffuse, const T *g_colour,  \
        const T *g_opacity, const T *g_depth, const T *g_normal, const T *g_orientation,      \
        T *d_sigma, T *d_albedo, T *d_normal, T *scratch, int threads) {                      \
        _Pragma("omp parallel for num_threads(threads) schedule(static, 1)")                  \
        for (int th = 0; th < threads; ++th) {                                                \
            T *weight = scratch + 3 * S * th, *after = weight + S, *slope = after + S;        \
            for (int64_t r = R * th / threads; r < R * (th + 1) / threads; ++r) {             \
                const T *d = dirs + 3 * r, *gc = g_colour + 3 * r, *gn = g_normal + 3 * r;    \
                const T go = g_opacity[r], gd = g_depth[r], gf = g_orientation[r];            \
                T transmittance = 1;                                                          \
                for (int64_t i = 0; i < S; ++i) {                                             \
                    const int64_t k = r * S + i;                                              \
                    const T *n = normal + 3 * k, *a = albedo + 3 * k;                         \
                    const T e = EXP(-sigma[k] * delta[k]);                                    \
                    const T w = transmittance * ((T)1 - e);                                   \
                    transmittance *= e;                                                       \
                    weight[i] = w;                                                            \
                    after[i] = transmittance;                                                 \
                    T l[3], c[3];                                                             \
                    int lit;                                                                  \
                    const T in = intensity_##SUFFIX(n, points + 3 * k, light + 3 * r, ambient, \
                                                    diffuse, l, &lit);                        \
                    shade_##SUFFIX(a, in, unlit[r], white[r], c);                             \
                    slope[i] = gc[0] * c[0] + gc[1] * c[1] + gc[2] * c[2] + go +              \
                               gd * depth[k] + gn[0] * n[0] + gn[1] * n[1] + gn[2] * n[2];    \
                    /* dL/dc = w g_colour, to the albedo and the intensity */                 \
                    T d_in = 0;                                                               \
                    for (int q = 0; q < 3; ++q) {                                             \
                        const T dc = w * gc[q];                                               \
                        if (unlit[r]) {                                                       \
                            d_albedo[3 * k + q] = dc;                                         \
                        } else if (white[r]) {                                                \
                            d_albedo[3 * k + q] = 0;                                          \
                            d_in += dc;                                                       \
                        } else {                                                              \
                            d_albedo[3 * k + q] = dc * in;                                    \
                            d_in += dc * a[q];                                                \
                        }                                                                     \
                    }                                                                         \
                    const T to_light = lit ? d_in * diffuse : (T)0;                           \
                    const T facing = n[0] * d[0] + n[1] * d[1] + n[2] * d[2];                 \
                    const T to_view = facing > 0 ? gf * w * (T)2 * facing : (T)0;             \
                    for (int q = 0; q < 3; ++q)                                               \
                        d_normal[3 * k + q] = to_light * l[q] + w * gn[q] + to_view * d[q];   \
                }                                                                             \
                T later = 0; /* sum over j > i of w_j G_j */                                  \
                for (int64_t i = S - 1; i >= 0; --i) {                                        \
                    const int64_t k = r * S + i;                                              \
                    d_sigma[k] = delta[k] * (after[i] * slope[i] - later);                    \
                    later += weight[i] * slope[i];                                            \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }

COMPOSITE(float, expf, sqrtf, f32)
COMPOSITE(double, exp, sqrt, f64)
