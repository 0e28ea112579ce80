"""Small C kernels for work PyTorch's CPU kernels do slowly, built on first use: the tanh GELU in bf16, and the
one-query attention of a decode step (`decode_attention`).

The tanh-approximate GELU of GPT-2 models (`gelu_new`; Hendrycks and Gimpel 2016, eq. 2 of the arXiv version's
appendix) takes torch 2.13's CPU kernel about 1.1 ms per million bf16 numbers on 2 threads, forward or backward, in
either precision: five times `torch.tanh` on float32 of the same size. In a bf16 PPO step of `alinea bench ppo`, with
the matrix products on AMX, that was about a tenth of the step. These kernels compute the same formula in float32
from bf16 inputs and round the results to bf16 (to nearest even, as torch's conversion): the forward

    gelu(x) = x * sigmoid(2 z),  z = sqrt(2 / pi) * (x + 0.044715 x^3)     (0.5 (1 + tanh z) = sigmoid(2 z))

and its derivative d/dx = s + x s (1 - s) 2 sqrt(2 / pi) (1 + 3 * 0.044715 x^2) with s = sigmoid(2 z), with an
exponential of about 2 ulp (Cody-Waite range reduction and a degree-6 polynomial) that the compiler vectorises.
Where |x| <= 3 the results equal torch's or differ by one bf16 rounding step (near a rounding boundary); below -3 they
are closer to the formula than torch's, whose 0.5 x (1 + tanh z) cancels (torch: -0.0 at x = -5.1, where the value
is -1.2e-7). Tested against the formula in float64 (tests/model/test_native.py).

`decode_attention` computes softmax(scale * K q) V for one query per (row, head) over a key/value cache in float32
arithmetic (bf16 caches are widened on the fly), with an online softmax over blocks of 128 positions (Milakov and
Gimelshein 2018, "Online normalizer calculation for softmax"), grouped-query heads and an optional mask of valid
positions. In a sampling loop the cache comes from memory at every step: torch's kernel spent about 0.65 ms per
layer and step there on the benchmark's workload (AMD EPYC, 2 threads), this one about 0.35 ms, near the time of
merely reading the keys and values; in bf16 torch's kernel is 4-6x slower still (docs/sampling.md).

The library is compiled with the C compiler found as `$CC` or `cc` (`-O3 -march=native`) into the user's cache
(`$XDG_CACHE_HOME/alinea/native` or `~/.cache/alinea/native`), keyed by the source, the compiler and this CPU's
feature flags, so a shared home directory never hands one CPU another's build. Without a compiler, or if the build
fails, `library()` returns None once with a warning and callers use torch's kernels. ALINEA_NATIVE=0 turns the
kernels off. The loops run on OpenMP threads (from 131072 numbers on): torch's own, since torch has loaded its
`libgomp.so.1` before this library asks for one of that name, so they obey `torch.set_num_threads` and no second
pool of threads spins beside torch's. (Two threads of Python, splitting the work by hand, were no faster inside a
model: torch's OpenMP threads keep spinning for a while after each of its parallel operations.)
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = r"""
#include <stdint.h>
#include <string.h>

static inline float from_bf16(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }

static inline uint16_t to_bf16(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;  /* to nearest, ties to even */
    uint32_t nan = (u >> 16) | 0x40u;                            /* a NaN stays a (quiet) NaN */
    return (uint16_t)(((u & 0x7fffffffu) > 0x7f800000u) ? nan : rounded);
}

static inline float exp_approx(float x) {  /* e^x, about 2 ulp; 0 below -87 is not needed here, inf above 88.7 */
    float big = x > 88.72f ? __builtin_inff() : 0.0f;
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float k = __builtin_rintf(x * 1.44269504088896341f);
    float r = x - k * 0.693359375f + k * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = (int32_t)k + 127;
    uint32_t bits = (uint32_t)e << 23;
    float scale; memcpy(&scale, &bits, 4);
    return p * scale + big;
}

#define GELU_C 0.7978845608028654f  /* sqrt(2 / pi) */
#define GELU_A 0.044715f

#define PARALLEL_FROM 131072
#define CHUNK 4096

/* The loops read their inputs from small copies on the stack: a saved activation that has left the core's cache
   (the backward pass reads it long after the forward wrote it) came in at a quarter of memcpy's pace when the
   arithmetic loop itself loaded it (1M numbers: 0.85 ms against 0.37 ms from cache; with the copies 0.43 ms). */

static void gelu_block(const uint16_t *restrict x, uint16_t *restrict y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = from_bf16(x[i]);
        float u = 2.0f * GELU_C * v * (1.0f + GELU_A * v * v);
        y[i] = to_bf16(v / (1.0f + exp_approx(-u)));
    }
}

static void gelu_backward_block(const uint16_t *restrict grad, const uint16_t *restrict x, uint16_t *restrict out,
                                int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = from_bf16(x[i]);
        float v2 = v * v;
        float u = 2.0f * GELU_C * v * (1.0f + GELU_A * v2);
        float s = 1.0f / (1.0f + exp_approx(-u));
        float d = s + v * s * (1.0f - s) * 2.0f * GELU_C * (1.0f + 3.0f * GELU_A * v2);
        out[i] = to_bf16(from_bf16(grad[i]) * d);
    }
}

void gelu_tanh_bf16(const uint16_t *x, uint16_t *y, int64_t n) {
    #pragma omp parallel for schedule(static) if (n >= PARALLEL_FROM)
    for (int64_t c = 0; c < n; c += CHUNK) {
        uint16_t xs[CHUNK];
        int64_t len = n - c < CHUNK ? n - c : CHUNK;
        memcpy(xs, x + c, (size_t)len * 2);
        gelu_block(xs, y + c, len);
    }
}

void gelu_tanh_bf16_backward(const uint16_t *grad, const uint16_t *x, uint16_t *out, int64_t n) {
    #pragma omp parallel for schedule(static) if (n >= PARALLEL_FROM)
    for (int64_t c = 0; c < n; c += CHUNK) {
        uint16_t xs[CHUNK], gs[CHUNK];
        int64_t len = n - c < CHUNK ? n - c : CHUNK;
        memcpy(xs, x + c, (size_t)len * 2);
        memcpy(gs, grad + c, (size_t)len * 2);
        gelu_backward_block(gs, xs, out + c, len);
    }
}
/* One-query attention of a decode step over a key/value cache, per (batch, head) row, in float32 arithmetic:
   out = softmax(scale * K q + mask) V, with an online softmax over blocks of BLOCK positions (scores on the stack,
   any cache length). q: (B, H, D) at strides q_b, q_h; keys and values: (B, H / G, L, D) at strides k_b, k_h (and
   v_b, v_h), positions D apart, query head h reading key/value head h / G (grouped-query attention); out: (B, H, D) at strides o_b, o_h; the last dimension contiguous everywhere. valid: NULL,
   or (B, L) bytes at stride m_b, 0 = masked position. A row with no valid position gets zeros. */

#define BLOCK 128
#define MAX_HEAD_DIM 512

#define DECODE_ATTENTION(NAME, T, LOAD, STORE)                                                                  \
void NAME(const T *q, const T *k, const T *v, T *out, const uint8_t *valid, int64_t B, int64_t H, int64_t G,  \
          int64_t L, int64_t D, int64_t q_b, int64_t q_h, int64_t k_b, int64_t k_h, int64_t v_b, int64_t v_h, int64_t o_b, \
          int64_t o_h, int64_t m_b, float scale) {                                                              \
    _Pragma("omp parallel for schedule(static) if (B * H * L * D >= 65536)")                                   \
    for (int64_t row = 0; row < B * H; row++) {                                                               \
        int64_t b = row / H, h = row % H, kv = h / G;                                                         \
        const T *qr = q + b * q_b + h * q_h, *kr = k + b * k_b + kv * k_h, *vr = v + b * v_b + kv * v_h;      \
        const uint8_t *mr = valid ? valid + b * m_b : 0;                                                       \
        float qs[MAX_HEAD_DIM], acc[MAX_HEAD_DIM], scores[BLOCK];                                            \
        for (int64_t d = 0; d < D; d++) { qs[d] = LOAD(qr[d]) * scale; acc[d] = 0.0f; }                     \
        float best = -__builtin_inff(), total = 0.0f;                                                         \
        for (int64_t start = 0; start < L; start += BLOCK) {                                                  \
            int64_t n = L - start < BLOCK ? L - start : BLOCK;                                                \
            float block_best = -__builtin_inff();                                                              \
            for (int64_t i = 0; i < n; i++) {                                                                 \
                const T *key = kr + (start + i) * D;                                                           \
                float dot = 0.0f;                                                                              \
                _Pragma("omp simd reduction(+ : dot)")                                                         \
                for (int64_t d = 0; d < D; d++) dot += qs[d] * LOAD(key[d]);                                 \
                if (mr && !mr[start + i]) dot = -__builtin_inff();                                             \
                scores[i] = dot;                                                                               \
                block_best = dot > block_best ? dot : block_best;                                              \
            }                                                                                                  \
            if (block_best == -__builtin_inff()) continue;                                                     \
            if (block_best > best) {                                                                           \
                float shrink = best == -__builtin_inff() ? 0.0f : exp_approx(best - block_best);              \
                total *= shrink;                                                                               \
                for (int64_t d = 0; d < D; d++) acc[d] *= shrink;                                            \
                best = block_best;                                                                             \
            }                                                                                                  \
            for (int64_t i = 0; i < n; i++) {                                                                 \
                if (scores[i] == -__builtin_inff()) continue;                                                  \
                float weight = exp_approx(scores[i] - best);                                                   \
                const T *value = vr + (start + i) * D;                                                         \
                total += weight;                                                                               \
                _Pragma("omp simd")                                                                            \
                for (int64_t d = 0; d < D; d++) acc[d] += weight * LOAD(value[d]);                           \
            }                                                                                                  \
        }                                                                                                      \
        T *orow = out + b * o_b + h * o_h;                                                                     \
        float inv = total > 0.0f ? 1.0f / total : 0.0f;                                                       \
        for (int64_t d = 0; d < D; d++) orow[d] = STORE(acc[d] * inv);                                       \
    }                                                                                                          \
}

#define ID(x) (x)
DECODE_ATTENTION(decode_attention_f32, float, ID, ID)
DECODE_ATTENTION(decode_attention_bf16, uint16_t, from_bf16, to_bf16)
"""

FLAGS = ["-O3", "-march=native", "-shared", "-fPIC", "-fno-math-errno", "-fopenmp"]
if platform.machine() in ("x86_64", "AMD64"):
    FLAGS.append("-mprefer-vector-width=512")  # gcc's default is 256 bits even where AVX-512 exists: 0.92 -> 0.66 ms

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_tried = False


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "alinea" / "native"


def _build(compiler: str) -> Path:
    key = hashlib.sha256("\0".join([SOURCE, compiler, *FLAGS, platform.machine(), _cpu_flags()]).encode()).hexdigest()
    target = _cache_dir() / f"kernels-{key[:16]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as folder:
        source = Path(folder) / "kernels.c"
        source.write_text(SOURCE)
        built = Path(folder) / "kernels.so"
        subprocess.run([compiler, *FLAGS, str(source), "-o", str(built)], check=True, capture_output=True, timeout=120)
        os.replace(built, target)  # atomic: another process building at the same time writes the same file
    return target


def library() -> ctypes.CDLL | None:
    """The compiled kernels, built on first use; None where they are off or cannot be built (a warning, once)."""
    global _library, _tried
    if _tried:
        return _library
    with _lock:
        if _tried:
            return _library
        _tried = True
        if os.environ.get("ALINEA_NATIVE", "1") == "0" or platform.system() != "Linux":
            return None
        compiler = shutil.which(os.environ.get("CC", "cc"))
        if compiler is None:
            log.warning("no C compiler (%s) found: using torch's GELU kernel (slower in bf16 on a CPU)",
                        os.environ.get("CC", "cc"))
            return None
        try:
            lib = ctypes.CDLL(str(_build(compiler)))
        except (OSError, subprocess.SubprocessError) as err:
            detail = getattr(err, "stderr", b"") or b""
            log.warning("building alinea's C kernels failed (%s%s): using torch's kernels", err,
                        f": {detail.decode(errors='replace')[:300]}" if detail else "")
            return None
        int64, pointer = ctypes.c_int64, ctypes.c_void_p
        lib.gelu_tanh_bf16.argtypes = [pointer, pointer, int64]
        lib.gelu_tanh_bf16_backward.argtypes = [pointer, pointer, pointer, int64]
        lib.gelu_tanh_bf16.restype = lib.gelu_tanh_bf16_backward.restype = None
        for kernel in (lib.decode_attention_f32, lib.decode_attention_bf16):
            kernel.argtypes = [pointer] * 5 + [int64] * 14 + [ctypes.c_float]
            kernel.restype = None
        _library = lib
        return lib


def usable(x: torch.Tensor) -> bool:
    """Whether the bf16 kernels take `x`: a contiguous bf16 CPU tensor, and the library is built."""
    return x.dtype == torch.bfloat16 and x.device.type == "cpu" and x.is_contiguous() and library() is not None


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh-approximate GELU of a contiguous bf16 CPU tensor (see the module's docstring); `usable(x)` must hold."""
    lib = library()
    out = torch.empty_like(x)
    lib.gelu_tanh_bf16(x.data_ptr(), out.data_ptr(), x.numel())
    return out


def gelu_tanh_backward(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The gradient through `gelu_tanh` at `x` of `grad` (both contiguous bf16 CPU tensors of one shape)."""
    lib = library()
    grad = grad.contiguous()
    out = torch.empty_like(x)
    lib.gelu_tanh_bf16_backward(grad.data_ptr(), x.data_ptr(), out.data_ptr(), x.numel())
    return out


DECODE_DTYPES = {torch.float32: "decode_attention_f32", torch.bfloat16: "decode_attention_bf16"}
"""The cache dtypes `decode_attention` takes, and their kernels."""


def decode_attention_usable(query: torch.Tensor, keys: torch.Tensor) -> bool:
    """Whether `decode_attention` takes these: CPU tensors of one dtype in `DECODE_DTYPES`, a single query per row,
    a contiguous last dimension of at most 512, cache positions stored one after the other, and the library built."""
    head_dim = query.shape[-1]
    return (
        query.device.type == "cpu" and keys.device.type == "cpu" and query.dtype == keys.dtype
        and query.dtype in DECODE_DTYPES and query.dim() == 4 and query.shape[2] == 1 and head_dim <= 512
        and query.stride(-1) == 1 and keys.stride(-1) == 1 and keys.stride(-2) == head_dim
        and query.shape[1] % keys.shape[1] == 0 and library() is not None
    )


def decode_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, valid: torch.Tensor | None,
                     scale: float) -> torch.Tensor:
    """Attention of one query per (batch, head) over a cache: query (B, H, 1, D), keys and values (B, KV, L, D) with
    H a multiple of KV, valid None or (B, L) bool (False = masked). Returns (B, 1, H * D) in the query's dtype.

    The same numbers as `scaled_dot_product_attention(query, keys, values, mask, scale=scale)` up to float32
    rounding (the exponential is `exp_approx`, about 2 ulp); `decode_attention_usable` must hold for query and keys,
    and for values as for keys.
    """
    batch, heads, _, head_dim = query.shape
    kv_heads, length = keys.shape[1], keys.shape[2]
    if keys.shape[0] != batch or keys.shape[3] != head_dim or values.shape != keys.shape:
        raise ValueError(f"decode_attention: keys and values must be ({batch}, kv_heads, length, {head_dim}), got "
                         f"{tuple(keys.shape)} and {tuple(values.shape)}")
    if values.stride(-1) != 1 or values.stride(-2) != head_dim or values.dtype != keys.dtype:
        raise ValueError("decode_attention: values must be laid out as keys are")
    out = torch.empty(batch, 1, heads * head_dim, dtype=query.dtype)
    mask_pointer, mask_stride = None, 0
    if valid is not None:
        if valid.dtype != torch.bool or valid.shape != (batch, length) or valid.stride(-1) != 1:
            raise ValueError(f"decode_attention: valid must be (batch, length) bool, got {tuple(valid.shape)}")
        mask_pointer, mask_stride = valid.data_ptr(), valid.stride(0)
    kernel = getattr(library(), DECODE_DTYPES[query.dtype])
    kernel(
        query.data_ptr(), keys.data_ptr(), values.data_ptr(), out.data_ptr(), mask_pointer, batch, heads,
        heads // kv_heads, length, head_dim, query.stride(0), query.stride(1), keys.stride(0), keys.stride(1),
        values.stride(0), values.stride(1), heads * head_dim, head_dim, mask_stride, scale,
    )
    return out
