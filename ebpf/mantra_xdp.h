/* SPDX-License-Identifier: GPL-2.0 */
/* Helpers shared by every XDP program Mantra generates.
 *
 * Headers are kept as byte arrays in network order; fields are read and written with
 * get_bits()/set_bits() at constant bit offsets, which clang folds into a few loads and
 * shifts. All arithmetic the generated code does is on __u64 values masked to the DP-IR
 * width, exactly as the reference interpreter (synth/interp.py) does it.
 */
#ifndef MANTRA_XDP_H
#define MANTRA_XDP_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define MASK(w) ((w) >= 64 ? ~0ULL : ((1ULL << (w)) - 1))

/* barrier_var() (bpf_helpers.h) keeps clang from folding away a range check the
 * verifier needs to see. */

/* Big-endian bit field [bit_off, bit_off + width) of b, width <= 64. */
static __always_inline __u64 get_bits(const __u8 *b, const __u32 bit_off, const __u32 width)
{
    __u64 v = 0;
    __u32 first = bit_off / 8, last = (bit_off + width - 1) / 8;
#pragma clang loop unroll(full)
    for (__u32 i = 0; i < 9; i++) {
        if (first + i > last)
            break;
        v = (v << 8) | b[first + i];
    }
    return (v >> (7 - (bit_off + width - 1) % 8)) & MASK(width);
}

static __always_inline void set_bits(__u8 *b, const __u32 bit_off, const __u32 width, __u64 value)
{
    __u32 end = bit_off + width; /* exclusive */
#pragma clang loop unroll(full)
    for (__u32 i = 0; i < 9; i++) {
        __u32 byte = bit_off / 8 + i;
        if (byte * 8 >= end)
            break;
        /* bits of this byte that belong to the field */
        __u32 lo = byte * 8 > bit_off ? byte * 8 : bit_off;
        __u32 hi = (byte + 1) * 8 < end ? (byte + 1) * 8 : end;
        __u32 n = hi - lo;
        __u8 m = (__u8)(((1U << n) - 1) << ((byte + 1) * 8 - hi));
        __u8 v = (__u8)(((value >> (end - hi)) & ((1U << n) - 1)) << ((byte + 1) * 8 - hi));
        b[byte] = (b[byte] & ~m) | v;
    }
}

/* CRC-32 (IEEE 802.3, reflected, as zlib.crc32 and v1model's HashAlgorithm.crc32). */
static __always_inline __u32 crc32(const __u8 *data, const __u32 len)
{
    __u32 crc = 0xffffffff;
#pragma clang loop unroll(full)
    for (__u32 i = 0; i < len; i++) {
        crc ^= data[i];
#pragma clang loop unroll(full)
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320 & (0 - (crc & 1)));
    }
    return ~crc;
}

/* DP-IR's OnesSum: the 16-bit one's-complement sum of 16-bit terms already added up
 * in 64 bits (fewer than 65536 of them), carries folded back in (RFC 1071). */
static __always_inline __u64 ones_fold(__u64 sum)
{
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return sum;
}

#endif /* MANTRA_XDP_H */
