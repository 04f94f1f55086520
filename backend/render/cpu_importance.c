/* Importance samples along R rays from a coarse pass's S densities: the CPU kernel of
 * backend/render/cpu_importance.py, which says what it computes (backend/cpu_build.py builds
 * it on first use). Arrays are contiguous: depth, sigma [R, S]; u, out [R, F]. */
#include <math.h>
#include <stdint.h>

#define IMPORTANCE(T, EXP, SUFFIX)                                                            \
    /* Thread th takes the th-th of `threads` equal runs of rays, with scratch[2 S th ..] its \
     * own. */                                                                                \
    void importance_depths_##SUFFIX(const T *depth, const T *sigma, const T *u, int64_t R,    \
                                    int64_t S, int64_t F, T pad, T *out, T *scratch,          \
                                    int threads) {                                            \
        _Pragma("omp parallel for num_threads(threads) schedule(static, 1)")                  \
        for (int th = 0; th < threads; ++th) {                                                \
            T *cdf = scratch + 2 * S * th, *edge = cdf + S;                                   \
            for (int64_t r = R * th / threads; r < R * (th + 1) / threads; ++r) {             \
                const T *t = depth + r * S, *s = sigma + r * S;                               \
                /* the weights w_i = T_i (1 - exp(-sigma_i delta_i)) of the interior samples  \
                 * 1 .. S - 2, plus pad, into cdf[1 ..]; their sum in fp64 (the last sample's \
                 * spacing, to the ray's far end, weighs only the last sample: not needed) */ \
                T transmittance = 1;                                                          \
                double total = 0;                                                             \
                for (int64_t i = 0; i < S - 1; ++i) {                                         \
                    const T delta = t[i + 1] - t[i];                                          \
                    const T e = EXP(-s[i] * delta);                                           \
                    if (i >= 1) {                                                             \
                        cdf[i] = transmittance * ((T)1 - e) + pad;                            \
                        total += cdf[i];                                                      \
                    }                                                                         \
                    transmittance *= e;                                                       \
                    edge[i] = (T)0.5 * (t[i + 1] + t[i]);                                     \
                }                                                                             \
                /* cdf[0] = 0, cdf[i] = the running sum of the normalised weights (fp64) */   \
                const T norm = (T)total;                                                      \
                double running = 0;                                                           \
                cdf[0] = 0;                                                                   \
                for (int64_t i = 1; i < S - 1; ++i) {                                         \
                    running += (double)(cdf[i] / norm);                                       \
                    cdf[i] = (T)running;                                                      \
                }                                                                             \
                const int64_t bins = S - 1; /* cdf and edge entries */                        \
                for (int64_t f = 0; f < F; ++f) {                                             \
                    const T level = u[r * F + f];                                             \
                    /* idx: how many cdf entries are <= level, clamped to [1, bins - 1] */    \
                    int64_t lo = 0, hi = bins;                                                \
                    while (lo < hi) {                                                         \
                        const int64_t mid = (lo + hi) / 2;                                    \
                        if (cdf[mid] <= level) lo = mid + 1;                                  \
                        else hi = mid;                                                        \
                    }                                                                         \
                    int64_t idx = lo < 1 ? 1 : (lo > bins - 1 ? bins - 1 : lo);               \
                    T span = cdf[idx] - cdf[idx - 1];                                         \
                    span = span > (T)1e-8 ? span : (T)1e-8;                                   \
                    const T frac = (level - cdf[idx - 1]) / span;                             \
                    out[r * F + f] = edge[idx - 1] + frac * (edge[idx] - edge[idx - 1]);      \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }

IMPORTANCE(float, expf, f32)
IMPORTANCE(double, exp, f64)
