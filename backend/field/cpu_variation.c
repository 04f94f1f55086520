/* Total variation of a grid [C, D, H, W] (contiguous) and its gradient: the CPU kernel of
 * backend/field/cpu_variation.py, which says what it computes. rho(d) = d^2 (eps <= 0) or
 * sqrt(d^2 + eps^2) - eps; the loss sums, over the three axes, the mean of rho over that
 * axis's neighbour pairs. */
#include <math.h>
#include <stdint.h>

#define VARIATION(T, SUFFIX)                                                                   \
    static inline double rho_##SUFFIX(T d, T eps) {                                           \
        return eps > 0 ? sqrt((double)d * d + (double)eps * eps) - (double)eps : (double)d * d; \
    }                                                                                         \
    static inline T slope_##SUFFIX(T d, T eps) { /* rho'(d) */                                \
        return eps > 0 ? d / sqrt(d * d + eps * eps) : (T)2 * d;                              \
    }                                                                                         \
                                                                                              \
    /* The loss (fp64 sums). */                                                               \
    double variation_##SUFFIX(const T *g, int64_t C, int64_t D, int64_t H, int64_t W, T eps,  \
                              int threads) {                                                  \
        double sz = 0, sy = 0, sx = 0;                                                        \
        _Pragma("omp parallel for num_threads(threads) reduction(+ : sz, sy, sx)")           \
        for (int64_t cz = 0; cz < C * D; ++cz) {                                              \
            const int64_t z = cz % D;                                                         \
            const T *p = g + cz * H * W;                                                      \
            for (int64_t y = 0; y < H; ++y)                                                   \
                for (int64_t x = 0; x < W; ++x) {                                             \
                    const T v = p[y * W + x];                                                 \
                    if (x + 1 < W) sx += rho_##SUFFIX(p[y * W + x + 1] - v, eps);             \
                    if (y + 1 < H) sy += rho_##SUFFIX(p[(y + 1) * W + x] - v, eps);           \
                    if (z + 1 < D) sz += rho_##SUFFIX(p[H * W + y * W + x] - v, eps);         \
                }                                                                             \
        }                                                                                     \
        double loss = 0;                                                                      \
        if (D > 1) loss += sz / (double)(C * (D - 1) * H * W);                                \
        if (H > 1) loss += sy / (double)(C * D * (H - 1) * W);                                \
        if (W > 1) loss += sx / (double)(C * D * H * (W - 1));                                \
        return loss;                                                                          \
    }                                                                                         \
                                                                                              \
    /* grad = scale * dloss/dg: each value gets rho'(d) / n from the pair it ends and minus  \
     * that from the pair it starts, along each axis (n: that axis's pair count). */          \
    void variation_backward_##SUFFIX(const T *g, int64_t C, int64_t D, int64_t H, int64_t W,  \
                                     T eps, T scale, T *grad, int threads) {                  \
        const T nz = D > 1 ? scale / (T)(C * (D - 1) * H * W) : 0;                            \
        const T ny = H > 1 ? scale / (T)(C * D * (H - 1) * W) : 0;                            \
        const T nx = W > 1 ? scale / (T)(C * D * H * (W - 1)) : 0;                            \
        _Pragma("omp parallel for num_threads(threads)")                                     \
        for (int64_t cz = 0; cz < C * D; ++cz) {                                              \
            const int64_t z = cz % D;                                                         \
            const T *p = g + cz * H * W;                                                      \
            T *o = grad + cz * H * W;                                                         \
            for (int64_t y = 0; y < H; ++y)                                                   \
                for (int64_t x = 0; x < W; ++x) {                                             \
                    const T v = p[y * W + x];                                                 \
                    T s = 0;                                                                  \
                    if (x + 1 < W) s -= nx * slope_##SUFFIX(p[y * W + x + 1] - v, eps);       \
                    if (x > 0) s += nx * slope_##SUFFIX(v - p[y * W + x - 1], eps);           \
                    if (y + 1 < H) s -= ny * slope_##SUFFIX(p[(y + 1) * W + x] - v, eps);     \
                    if (y > 0) s += ny * slope_##SUFFIX(v - p[(y - 1) * W + x], eps);         \
                    if (z + 1 < D) s -= nz * slope_##SUFFIX(p[H * W + y * W + x] - v, eps);   \
                    if (z > 0) s += nz * slope_##SUFFIX(v - p[y * W + x - H * W], eps);       \
                    o[y * W + x] = s;                                                         \
                }                                                                             \
        }                                                                                     \
    }

VARIATION(float, f32)
VARIATION(double, f64)
