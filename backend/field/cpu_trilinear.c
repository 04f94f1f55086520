/* Trilinear lookup of a channels-last grid [D, H, W, C] at points [N, 3] (x, y, z), and its
 * gradient in the grid: the CPU kernel of backend/field/cpu_trilinear.py, which says what it
 * computes (backend/cpu_build.py builds it on first use). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define CORNER(T, p, scale, size, i, t)                          \
    do {                                                      \
        T hi_ = (T)((size) - 1);                              \
        T u_ = ((p) * (scale) + (T)1) * (T)0.5 * hi_;         \
        u_ = u_ > (T)0 ? u_ : (T)0;                           \
        u_ = u_ < hi_ ? u_ : hi_;                             \
        (i) = (int64_t)u_;                                    \
        if ((i) > (size) - 2) (i) = (size) - 2;               \
        (t) = u_ - (T)(i);                                    \
    } while (0)

#define WEIGHTS(T)                                                          \
    CORNER(T, px, scale, W, i, tx);                                         \
    CORNER(T, py, scale, H, j, ty);                                         \
    CORNER(T, pz, scale, D, k, tz);                                         \
    const T sx = (T)1 - tx, sy = (T)1 - ty, sz = (T)1 - tz;                \
    const T w[8] = {sx * sy * sz, tx * sy * sz, sx * ty * sz, tx * ty * sz, \
                    sx * sy * tz, tx * sy * tz, sx * ty * tz, tx * ty * tz}; \
    const int64_t base = ((k * H + j) * W + i) * C;                        \
    const int64_t dx = C, dy = W * C, dz = H * W * C;                      \
    const int64_t at[8] = {base, base + dx, base + dy, base + dy + dx,     \
                           base + dz, base + dz + dx, base + dz + dy, base + dz + dy + dx};

#define SLAB_THREADS_MAX 256
#define SLAB_SAMPLE_STRIDE 16

/* bounds[0..threads]: z-layer ranges [bounds[t], bounds[t + 1]) holding about equal shares of
 * the points' lower corner layers, counted on every SLAB_SAMPLE_STRIDE-th point. */
#define SLABS(T, SUFFIX)                                                                       \
    static void slab_bounds_##SUFFIX(const T *points, int64_t N, T scale, int64_t D,          \
                                     int threads, int64_t *bounds) {                          \
        bounds[0] = 0;                                                                        \
        bounds[threads] = D;                                                                  \
        if (threads == 1) return;                                                             \
        int64_t *count = calloc((size_t)D, sizeof(int64_t));                                  \
        if (!count) { /* no memory for the counts: equal slabs */                             \
            for (int t = 1; t < threads; ++t) bounds[t] = D * t / threads;                    \
            return;                                                                           \
        }                                                                                     \
        int64_t total = 0;                                                                    \
        for (int64_t n = 0; n < N; n += SLAB_SAMPLE_STRIDE) {                                 \
            const T pz = points[3 * n + 2];                                                   \
            if (pz != pz) continue;                                                           \
            int64_t k;                                                                        \
            T tz;                                                                             \
            CORNER(T, pz, scale, D, k, tz);                                                   \
            (void)tz;                                                                         \
            count[k] += 1;                                                                    \
            total += 1;                                                                       \
        }                                                                                     \
        int64_t seen = 0, z = 0;                                                              \
        for (int t = 1; t < threads; ++t) {                                                   \
            while (z < D && seen + count[z] <= total * t / threads) seen += count[z++];       \
            bounds[t] = z > bounds[t - 1] ? z : bounds[t - 1];                                \
        }                                                                                     \
        free(count);                                                                          \
    }

SLABS(float, f32)
SLABS(double, f64)

#define KERNELS(T, SUFFIX)                                                                   \
    void trilinear_forward_##SUFFIX(const T *table, int64_t D, int64_t H, int64_t W,          \
                                    int64_t C, const T *points, int64_t N, T scale, T *out,   \
                                    int threads) {                                            \
        _Pragma("omp parallel for num_threads(threads) schedule(static)")                    \
        for (int64_t n = 0; n < N; ++n) {                                                     \
            const T px = points[3 * n], py = points[3 * n + 1], pz = points[3 * n + 2];       \
            T *o = out + n * C;                                                               \
            if (px != px || py != py || pz != pz) {                                           \
                for (int64_t c = 0; c < C; ++c) o[c] = (T)NAN;                                \
                continue;                                                                     \
            }                                                                                 \
            int64_t i, j, k;                                                                  \
            T tx, ty, tz;                                                                     \
            WEIGHTS(T)                                                                        \
            for (int64_t c = 0; c < C; ++c) {                                                 \
                T v = w[0] * table[at[0] + c];                                                \
                for (int q = 1; q < 8; ++q) v += w[q] * table[at[q] + c];                     \
                o[c] = v;                                                                     \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
                                                                                              \
    /* out [D, H, W, C] = dL/dgrid. Each thread owns a slab of z-layers and scans every      \
     * point, adding the corners in its slab, so no two threads write one value and each value \
     * sums its points in point order, whatever the thread count. The slabs split a sample of  \
     * the points' layers evenly. */                                                          \
    void trilinear_backward_##SUFFIX(const T *grad_out, const T *points, int64_t N, T scale,  \
                                     int64_t D, int64_t H, int64_t W, int64_t C, T *out,      \
                                     int threads) {                                           \
        int64_t bounds[SLAB_THREADS_MAX + 1];                                                 \
        if (threads > SLAB_THREADS_MAX) threads = SLAB_THREADS_MAX;                           \
        if (threads > D - 1) threads = (int)(D - 1);                                          \
        if (threads < 1) threads = 1;                                                         \
        slab_bounds_##SUFFIX(points, N, scale, D, threads, bounds);                           \
        const int64_t layer = H * W * C;                                                      \
        _Pragma("omp parallel for num_threads(threads) schedule(static, 1)")                 \
        for (int t = 0; t < threads; ++t) {                                                   \
            const int64_t lo = bounds[t], hi = bounds[t + 1];                                 \
            for (int64_t v = lo * layer; v < hi * layer; ++v) out[v] = (T)0;                  \
            for (int64_t n = 0; n < N; ++n) {                                                 \
                const T px = points[3 * n], py = points[3 * n + 1], pz = points[3 * n + 2];   \
                if (px != px || py != py || pz != pz) continue;                               \
                int64_t k;                                                                    \
                T tz;                                                                         \
                CORNER(T, pz, scale, D, k, tz);                                               \
                if (k + 1 < lo || k >= hi) continue;                                          \
                int64_t i, j;                                                                 \
                T tx, ty;                                                                     \
                CORNER(T, px, scale, W, i, tx);                                               \
                CORNER(T, py, scale, H, j, ty);                                               \
                const T sx = (T)1 - tx, sy = (T)1 - ty;                                       \
                const T w4[4] = {sx * sy, tx * sy, sx * ty, tx * ty};                        \
                const int64_t in_layer[4] = {0, C, W * C, W * C + C};                         \
                const T *go = grad_out + n * C;                                               \
                for (int e = 0; e < 2; ++e) {                                                 \
                    const int64_t z = k + e;                                                  \
                    if (z < lo || z >= hi) continue;                                          \
                    const T wz = e ? tz : (T)1 - tz;                                          \
                    T *g = out + z * layer + (j * W + i) * C;                                 \
                    for (int q = 0; q < 4; ++q) {                                             \
                        const T w = w4[q] * wz;                                               \
                        for (int64_t c = 0; c < C; ++c) g[in_layer[q] + c] += w * go[c];      \
                    }                                                                         \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }

KERNELS(float, f32)
KERNELS(double, f64)
