/* The grid field's channels-last lookup table [D, H, W, 7] built from its raw density grid
 * s [D, H, W] and albedo logits a [3, D, H, W], and the table's gradient taken back to them:
 * the CPU kernel of backend/field/cpu_field_table.py, which says what it computes. */
#include <stdint.h>

#define CHANNELS 7

#define TABLE(T, SUFFIX)                                                                      \
    /* table[z, y, x] = (s, a_0, a_1, a_2, inv (s[x+] - s[x-]), inv (s[y+] - s[y-]),          \
     * inv (s[z+] - s[z-])), the neighbours' indices clamped to the grid. */                  \
    void field_table_forward_##SUFFIX(const T *s, const T *a, int64_t D, int64_t H,           \
                                      int64_t W, T inv, T *table, int threads) {              \
        const int64_t volume = D * H * W;                                                     \
        _Pragma("omp parallel for num_threads(threads) schedule(static)")                     \
        for (int64_t zy = 0; zy < D * H; ++zy) {                                              \
            const int64_t z = zy / H, y = zy % H;                                             \
            const T *row = s + zy * W;                                                        \
            const T *up = s + (z + 1 < D ? zy + H : zy) * W;                                  \
            const T *down = s + (z > 0 ? zy - H : zy) * W;                                    \
            const T *ahead = s + (y + 1 < H ? zy + 1 : zy) * W;                               \
            const T *behind = s + (y > 0 ? zy - 1 : zy) * W;                                  \
            T *o = table + zy * W * CHANNELS;                                                 \
            for (int64_t x = 0; x < W; ++x, o += CHANNELS) {                                  \
                const int64_t v = zy * W + x;                                                 \
                o[0] = row[x];                                                                \
                o[1] = a[v];                                                                  \
                o[2] = a[volume + v];                                                         \
                o[3] = a[2 * volume + v];                                                     \
                o[4] = (row[x + 1 < W ? x + 1 : x] - row[x > 0 ? x - 1 : x]) * inv;           \
                o[5] = (ahead[x] - behind[x]) * inv;                                          \
                o[6] = (up[x] - down[x]) * inv;                                               \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
                                                                                              \
    /* grad [D, H, W, 7] = dL/dtable -> ds [D, H, W], da [3, D, H, W]. Value v of s gets      \
     * grad[v, 0] plus, along each axis, inv times the gradient of the differences that read  \
     * it as the upper neighbour minus those that read it as the lower one (with the clamp,   \
     * the last value is its own upper neighbour and the first its own lower one). */         \
    void field_table_backward_##SUFFIX(const T *grad, int64_t D, int64_t H, int64_t W, T inv, \
                                       T *ds, T *da, int threads) {                           \
        const int64_t volume = D * H * W;                                                     \
        const int64_t sx = CHANNELS, sy = W * CHANNELS, sz = H * W * CHANNELS;                \
        _Pragma("omp parallel for num_threads(threads) schedule(static)")                     \
        for (int64_t zy = 0; zy < D * H; ++zy) {                                              \
            const int64_t z = zy / H, y = zy % H;                                             \
            for (int64_t x = 0; x < W; ++x) {                                                 \
                const int64_t v = zy * W + x;                                                 \
                const T *g = grad + v * CHANNELS;                                             \
                T d = 0;                                                                      \
                if (x > 0) d += g[4 - sx];                                                    \
                if (x == W - 1) d += g[4];                                                    \
                if (x + 1 < W) d -= g[4 + sx];                                                \
                if (x == 0) d -= g[4];                                                        \
                if (y > 0) d += g[5 - sy];                                                    \
                if (y == H - 1) d += g[5];                                                    \
                if (y + 1 < H) d -= g[5 + sy];                                                \
                if (y == 0) d -= g[5];                                                        \
                if (z > 0) d += g[6 - sz];                                                    \
                if (z == D - 1) d += g[6];                                                    \
                if (z + 1 < D) d -= g[6 + sz];                                                \
                if (z == 0) d -= g[6];                                                        \
                ds[v] = g[0] + inv * d;                                                       \
                da[v] = g[1];                                                                 \
                da[volume + v] = g[2];                                                        \
                da[2 * volume + v] = g[3];                                                    \
            }                                                                                 \
        }                                                                                     \
    }

TABLE(float, f32)
TABLE(double, f64)
