/* Trilinear lookup of a channels-last grid [D, H, W, C] at points [N, 3] (x, y, z), and its
 * gradient in the grid: the CPU kernel of backend/field/cpu_trilinear.py, which builds this
 * file with the system's C compiler on first use and says what it computes. */
#include <math.h>
#include <stdint.h>

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

#define KERNELS(T, SUFFIX)                                                                   \
    void trilinear_forward_##SUFFIX(const T *table, int64_t D, int64_t H, int64_t W,          \
                                    int64_t C, const T *points, int64_t N, T scale, T *out,   \
                                    int threads) {                                            \
        _Pragma("omp parallel for num_threads(threads) schedule(static)")                    \
        for (int64_t n = 0; n < N; ++n) {                                                     \
            const T px = points[3 * n], py = points[3 * n + 1], pz = points[3 * n + 2];       \
            T *o = out + n * C;                                                               \
            if (px != px || py != py || pz != pz) {                                           \
                for (int64_t c = 0; c < C; ++c) o[c] = (T)NAN;                  \
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
    /* scratch [copy_count, D, H, W, C]: one gradient copy per thread; out [D, H, W, C]:     \
     * their sum. */                                                                          \
    void trilinear_backward_##SUFFIX(const T *grad_out, const T *points, int64_t N, T scale,  \
                                     T *scratch, int64_t copy_count, int64_t D, int64_t H,    \
                                     int64_t W, int64_t C, T *out) {                          \
        const int64_t size = D * H * W * C;                                                   \
        const int64_t share = (N + copy_count - 1) / copy_count;                              \
        _Pragma("omp parallel for num_threads(copy_count) schedule(static, 1)")              \
        for (int64_t s = 0; s < copy_count; ++s) {                                            \
            T *g = scratch + s * size;                                                        \
            for (int64_t v = 0; v < size; ++v) g[v] = (T)0;                                   \
            const int64_t end = (s + 1) * share < N ? (s + 1) * share : N;                    \
            for (int64_t n = s * share; n < end; ++n) {                                       \
                const T px = points[3 * n], py = points[3 * n + 1], pz = points[3 * n + 2];   \
                if (px != px || py != py || pz != pz) continue;                               \
                int64_t i, j, k;                                                              \
                T tx, ty, tz;                                                                 \
                WEIGHTS(T)                                                                    \
                const T *go = grad_out + n * C;                                               \
                for (int q = 0; q < 8; ++q)                                                   \
                    for (int64_t c = 0; c < C; ++c) g[at[q] + c] += w[q] * go[c];             \
            }                                                                                 \
        }                                                                                     \
        _Pragma("omp parallel for num_threads(copy_count) schedule(static)")                 \
        for (int64_t v = 0; v < size; ++v) {                                                  \
            T sum = scratch[v];                                                               \
            for (int64_t s = 1; s < copy_count; ++s) sum += scratch[s * size + v];            \
            out[v] = sum;                                                                     \
        }                                                                                     \
    }

KERNELS(float, f32)
KERNELS(double, f64)
