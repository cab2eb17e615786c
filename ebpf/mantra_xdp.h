/* SPDX-License-Identifier: GPL-2.0 */
/* Helpers shared by every XDP program Mantra generates.
 *
 * Header fields live in local variables (__u64, masked to their DP-IR width, 0 while
 * their header is invalid); the packet is read and written in place through these
 * big-endian loads and stores, always after a bounds check the verifier can follow.
 */
#ifndef MANTRA_XDP_H
#define MANTRA_XDP_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MASK(w) ((w) >= 64 ? ~0ULL : ((1ULL << (w)) - 1))
#define BIT(i) (1U << (i))

/* Big-endian loads and stores of 1, 2, 4 and 8 bytes (x86 and arm64 allow unaligned
 * packet access; the kernel checks it for other architectures). */
static __always_inline __u64 ld8(const void *p) { return *(const __u8 *)p; }
static __always_inline __u64 ld16(const void *p) { return bpf_ntohs(*(const __u16 *)p); }
static __always_inline __u64 ld32(const void *p) { return bpf_ntohl(*(const __u32 *)p); }
static __always_inline __u64 ld64(const void *p) { return bpf_be64_to_cpu(*(const __u64 *)p); }
static __always_inline void st8(void *p, __u64 v) { *(__u8 *)p = (__u8)v; }
static __always_inline void st16(void *p, __u64 v) { *(__u16 *)p = bpf_htons((__u16)v); }
static __always_inline void st32(void *p, __u64 v) { *(__u32 *)p = bpf_htonl((__u32)v); }
static __always_inline void st64(void *p, __u64 v) { *(__u64 *)p = bpf_cpu_to_be64(v); }

/* DP-IR's OnesSum: the 16-bit one's-complement sum of 16-bit terms already added up
 * in 64 bits (fewer than 65536 of them), carries folded back in (RFC 1071). */
static __always_inline __u64 ones_fold(__u64 sum)
{
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return sum;
}

struct counter {
    __u64 packets;
    __u64 bytes;
};

struct bucket {
    __u64 tokens; /* bit-nanoseconds: bytes x 8e9 */
    __u64 last;   /* ns of the last refill */
};

#define TOKEN_SCALE 8000000000ULL
#define GREEN 0
#define RED 2

/* Single-rate token bucket, exactly as synth/interp.py's refill(): a gap of at least
 * fill_ns (ceil(burst * TOKEN_SCALE / rate), a compile-time constant) fills it. */
static __always_inline __u64 meter_take(struct bucket *b, __u64 now, __u64 len, __u64 rate, __u64 full,
                                        __u64 fill_ns)
{
    __u64 tokens = b->tokens;
    __s64 gap = (__s64)(now - b->last);

    if (gap > 0) {
        if ((__u64)gap >= fill_ns) {
            tokens = full;
        } else {
            tokens += (__u64)gap * rate;
            if (tokens > full)
                tokens = full;
        }
    }
    __u64 need = len * TOKEN_SCALE;
    __u64 colour = RED;
    if (tokens >= need) {
        colour = GREEN;
        tokens -= need;
    }
    b->tokens = tokens;
    b->last = now;
    return colour;
}

#endif /* MANTRA_XDP_H */
