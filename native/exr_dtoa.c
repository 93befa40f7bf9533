/*
 * Shortest round-trip formatting of a double, spelled as orjson spells it.
 *
 * Digits: Ryu (Ulf Adams, "Ryu: Fast Float-to-String Conversion", PLDI 2018). The value
 * m * 2^e and the bounds of its rounding interval are scaled by 10^-q with one 64x128-bit
 * multiply each, then decimal digits are dropped while the bounds still differ; the result
 * is the shortest digit string that reads back as the double, the closest one on ties
 * (round half even). Equal to David Gay's dtoa mode 0, i.e. Python's repr.
 *
 * The 128-bit multipliers 5^i (and 2^k / 5^q) are rebuilt on the fly from every 26th one,
 * times 5^offset, plus a 2-bit correction: about 1 KB of tables instead of 10 KB.
 *
 * Spelling (orjson): with the decimal exponent e of d.ddd x 10^e,
 *   -5 <= e < 16 : positional, "1.0", "0.00001234", "1234567890123456.8"
 *   otherwise    : "1e-7", "1.5e+16", "5e-324" (no zero padding, '+' on positive exponents)
 * and "-0.0" for negative zero, "null" for NaN and infinities.
 */
#include "internal_dtoa.h"

#include <stdint.h>
#include <string.h>

__extension__ typedef unsigned __int128 u128;

#define MANTISSA_BITS 52
#define EXPONENT_BIAS 1023
#define MUL_BITS 125 /* significant bits of every multiplier */
#define TABLE_STEP 26

/* ---- the multipliers ----------------------------------------------------- */

/*
 * Derivation (Python; tests/test_dtoa.py checks these tables against it):
 *   pow5bits(e)      = ((e * 1217359) >> 19) + 1               # bits of 5^e, for 0 <= e <= 3528
 *   POW5(i)          = 5^i scaled to MUL_BITS bits: 5^i >> (pow5bits(i) - 125), << when negative
 *   POW5_INV(q)      = 2^(pow5bits(q) - 1 + 125) // 5^q + 1
 *   POW5_BASE[b]     = POW5(26 b)                               # b = 0..12, i <= 325
 *   POW5_INV_BASE[b] = POW5_INV(26 b) - 1                       # b = 0..14, q <= 341
 *   *_CORR[i]        = exact value - value rebuilt below, 0..3, 2 bits each, 16 per word
 * Entries are {low 64 bits, high 64 bits}.
 */
static const uint64_t POW5_BASE[13][2] = {
    {0x0000000000000000u, 0x1000000000000000u}, {0x0000000000000000u, 0x14adf4b7320334b9u},
    {0x0e549208b31adb10u, 0x1aba4714957d300du}, {0x6dc6ad264d8f0866u, 0x1145b7e285bf98f5u},
    {0xeb1dbd923d8596cau, 0x1652efdc6018a1fcu}, {0xb4c1b80b22ae923cu, 0x1cda62055b2d9d83u},
    {0x5bb28b4e8f7e4c30u, 0x12a5568b9f52f416u}, {0xf08aed437682d4fbu, 0x1819651531f9e78fu},
    {0xb4ee134ad99bf150u, 0x1f25c186a6f04c28u}, {0x16499ecb70c25f03u, 0x1420eb449c8842e6u},
    {0x85a56ead360865b0u, 0x1a03fde214caf085u}, {0x093db1d57999890bu, 0x10cfeb353a97dad8u},
    {0xcf38bb735e3f36acu, 0x15baaf44fa52673eu},
};

static const uint64_t POW5_INV_BASE[15][2] = {
    {0x0000000000000000u, 0x2000000000000000u}, {0x52a6c95fc0655033u, 0x18c240c4aecb13bbu},
    {0x7ca8d50071dfc805u, 0x1327fc58da0f6ff5u}, {0x6520247d3556476du, 0x1da48ce468e7c702u},
    {0x6139cdd76802e6e8u, 0x16ef5b40c2fc7779u}, {0xf951a7ff43de8c78u, 0x11bebdf578b2f391u},
    {0x7be8bee8d6e957e7u, 0x1b758d848fac54b0u}, {0x8bd3f9e999a423e9u, 0x153eda614071a3b7u},
    {0x0848f973cb3ee3cdu, 0x10701bd527b4978cu}, {0x153285ebb9efbfa1u, 0x196fbb9bb44db44du},
    {0xadeee7f86c07b695u, 0x13ae3591f5b4d936u}, {0x4d686a4eaf182221u, 0x1e74404f3daada91u},
    {0x98c0a106e09ebd9eu, 0x17900ea4fda7c257u}, {0x8f20e37371497d0du, 0x123b140576d820b2u},
    {0xb043138134743d84u, 0x1c35f4275f7a29adu},
};

static const uint32_t POW5_CORR[21] = {
    0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x40000000u, 0x59695995u, 0x55545555u,
    0x56555515u, 0x41150504u, 0x40555410u, 0x44555145u, 0x44504540u, 0x45555550u, 0x40004000u,
    0x96440440u, 0x55565565u, 0x54454045u, 0x40154151u, 0x55559155u, 0x51405555u, 0x00000105u,
};

static const uint32_t POW5_INV_CORR[22] = {
    0xa9a99aa9u, 0x595aaa9au, 0x65596555u, 0x55955969u, 0x95565555u, 0x966aaaaau, 0x555559a9u, 0x55565599u,
    0x95555555u, 0x99555596u, 0xa59a99a5u, 0xaaaa55a9u, 0xa6baaaa9u, 0x95559555u, 0x56555556u, 0x55565a55u,
    0xa6a6a966u, 0x5aaaaaa9u, 0xa5966a55u, 0x95595555u, 0x5a595665u, 0x00000555u,
};

static const uint64_t POW5_SMALL[TABLE_STEP] = {
    1u, 5u, 25u, 125u, 625u, 3125u, 15625u, 78125u, 390625u, 1953125u, 9765625u, 48828125u,
    244140625u, 1220703125u, 6103515625u, 30517578125u, 152587890625u, 762939453125u,
    3814697265625u, 19073486328125u, 95367431640625u, 476837158203125u, 2384185791015625u,
    11920928955078125u, 59604644775390625u, 298023223876953125u,
};

/* ceil(log2(5^e)) (1 for e = 0), floor(log10(2^e)), floor(log10(5^e)); exact on the ranges used. */
static uint32_t pow5bits(uint32_t e) { return ((e * 1217359u) >> 19) + 1; }
static uint32_t log10_pow2(uint32_t e) { return (e * 78913u) >> 18; }
static uint32_t log10_pow5(uint32_t e) { return (e * 732923u) >> 20; }

static uint32_t corr_at(const uint32_t *words, uint32_t i) { return (words[i / 16] >> (2 * (i % 16))) & 3u; }

/* base * 5^off >> delta, plus the correction: the exact 125-bit multiplier. delta <= 59. */
static void rebuild(const uint64_t base[2], uint32_t off, uint32_t delta, uint32_t corr, uint64_t out[2])
{
    u128 b0 = (u128) POW5_SMALL[off] * base[0];
    u128 b2 = (u128) POW5_SMALL[off] * base[1];
    /* (b2 * 2^64 + b0) >> delta; the bits b2 loses above 2^128 are zero in the result */
    u128 r = (b0 >> delta) + (b2 << (64 - delta)) + corr;
    out[0] = (uint64_t) r;
    out[1] = (uint64_t) (r >> 64);
}

/* POW5(i) for 0 <= i <= 325 */
static void pow5_split(uint32_t i, uint64_t out[2])
{
    uint32_t b = i / TABLE_STEP;
    rebuild(POW5_BASE[b], i - b * TABLE_STEP, pow5bits(i) - pow5bits(b * TABLE_STEP), corr_at(POW5_CORR, i), out);
}

/* POW5_INV(q) for 0 <= q <= 341 */
static void pow5_inv_split(uint32_t q, uint64_t out[2])
{
    uint32_t b = (q + TABLE_STEP - 1) / TABLE_STEP;
    rebuild(POW5_INV_BASE[b], b * TABLE_STEP - q, pow5bits(b * TABLE_STEP) - pow5bits(q), corr_at(POW5_INV_CORR, q),
            out);
}

/* (m * mul) >> j for m < 2^55, 118 <= j <= 125: the top of a 64x128-bit product. */
static uint64_t mul_shift(uint64_t m, const uint64_t mul[2], uint32_t j)
{
    u128 b0 = (u128) m * mul[0];
    u128 b2 = (u128) m * mul[1];
    return (uint64_t) (((b0 >> 64) + b2) >> (j - 64));
}

static int multiple_of_pow5(uint64_t v, uint32_t p)
{
    uint32_t n = 0;
    while (v % 5 == 0 && n < p) {
        v /= 5;
        n++;
    }
    return n >= p;
}

static int multiple_of_pow2(uint64_t v, uint32_t p) { return (v & ((1ull << p) - 1)) == 0; } /* p < 64 */

/* ---- shortest digits ------------------------------------------------------ */

typedef struct {
    uint64_t digits; /* 1..17 digits, no trailing zeros (Ryu's shortest has none) */
    int32_t exp10;   /* value = digits * 10^exp10 */
} decimal_t;

/* Integers below 2^53: the digits are exact and shortest. Returns 0 when v is not one. */
static int small_int(uint64_t ieee_m, uint32_t ieee_e, decimal_t *d)
{
    uint64_t m2 = (1ull << MANTISSA_BITS) | ieee_m;
    int32_t e2 = (int32_t) ieee_e - EXPONENT_BIAS - MANTISSA_BITS;
    uint64_t v;
    if (ieee_e == 0 || e2 > 0 || e2 < -MANTISSA_BITS) return 0;
    if (m2 & ((1ull << -e2) - 1)) return 0; /* a fraction */
    v = m2 >> -e2;
    d->exp10 = 0;
    while (v % 10 == 0) { /* v >= 1 */
        v /= 10;
        d->exp10++;
    }
    d->digits = v;
    return 1;
}

/* Ryu, for a finite nonzero double given by its biased exponent and mantissa bits. */
static decimal_t shortest(uint64_t ieee_m, uint32_t ieee_e)
{
    /* m2 * 2^e2 is the value over 4: two spare bits hold the interval bounds */
    int32_t e2 = (ieee_e ? (int32_t) ieee_e : 1) - EXPONENT_BIAS - MANTISSA_BITS - 2;
    uint64_t m2 = ieee_e ? (1ull << MANTISSA_BITS) | ieee_m : ieee_m;
    int accept_bounds = (m2 & 1) == 0; /* round half even: an even mantissa owns its bounds */
    uint64_t mv = 4 * m2;
    uint32_t mm_shift = ieee_m != 0 || ieee_e <= 1; /* the lower gap halves at a power of two */
    uint64_t mul[2], vr, vp, vm, output;
    int32_t e10;
    int vm_tz = 0, vr_tz = 0; /* vm / vr are exact (the dropped digits were all zeros) */
    uint32_t removed = 0;
    uint8_t last = 0;

    if (e2 >= 0) { /* scale by 2^e2 / 10^q */
        uint32_t q = log10_pow2((uint32_t) e2) - (e2 > 3);
        uint32_t j = q + MUL_BITS - 1 + pow5bits(q) - (uint32_t) e2;
        e10 = (int32_t) q;
        pow5_inv_split(q, mul);
        vr = mul_shift(mv, mul, j);
        vp = mul_shift(mv + 2, mul, j);
        vm = mul_shift(mv - 1 - mm_shift, mul, j);
        if (q <= 21) { /* exact only if 5^q divides; at most one of mv-2..mv+2 is a multiple of 5 */
            if (mv % 5 == 0)
                vr_tz = multiple_of_pow5(mv, q);
            else if (accept_bounds)
                vm_tz = multiple_of_pow5(mv - 1 - mm_shift, q);
            else
                vp -= (uint64_t) multiple_of_pow5(mv + 2, q); /* an exact upper bound is excluded */
        }
    } else { /* scale by 5^-e2 / 10^q */
        uint32_t q = log10_pow5((uint32_t) -e2) - (-e2 > 1);
        uint32_t i = (uint32_t) -e2 - q;
        uint32_t j = q + MUL_BITS - pow5bits(i);
        e10 = (int32_t) q + e2;
        pow5_split(i, mul);
        vr = mul_shift(mv, mul, j);
        vp = mul_shift(mv + 2, mul, j);
        vm = mul_shift(mv - 1 - mm_shift, mul, j);
        if (q <= 1) { /* exact only if 2^q divides */
            vr_tz = 1;
            if (accept_bounds)
                vm_tz = q == 0 || mm_shift == 1;
            else
                vp--;
        } else if (q < 63) {
            vr_tz = multiple_of_pow2(mv, q);
        }
    }

    if (vm_tz || vr_tz) { /* rare: ties and exact bounds need the dropped digits tracked */
        while (vp / 10 > vm / 10) {
            vm_tz &= vm % 10 == 0;
            vr_tz &= last == 0;
            last = (uint8_t) (vr % 10);
            vr /= 10;
            vp /= 10;
            vm /= 10;
            removed++;
        }
        if (vm_tz) {
            while (vm % 10 == 0) {
                vr_tz &= last == 0;
                last = (uint8_t) (vr % 10);
                vr /= 10;
                vp /= 10;
                vm /= 10;
                removed++;
            }
        }
        if (vr_tz && last == 5 && vr % 2 == 0) last = 4; /* exactly half: round to even */
        output = vr + ((vr == vm && (!accept_bounds || !vm_tz)) || last >= 5);
    } else { /* common case: two digits at a time first */
        int round_up = 0;
        if (vp / 100 > vm / 100) {
            round_up = vr % 100 >= 50;
            vr /= 100;
            vp /= 100;
            vm /= 100;
            removed += 2;
        }
        while (vp / 10 > vm / 10) {
            round_up = vr % 10 >= 5;
            vr /= 10;
            vp /= 10;
            vm /= 10;
            removed++;
        }
        output = vr + (vr == vm || round_up);
    }
    return (decimal_t){output, e10 + (int32_t) removed};
}

/* ---- spelling --------------------------------------------------------------- */

static const char DIGIT_PAIRS[] = "0001020304050607080910111213141516171819"
                                  "2021222324252627282930313233343536373839"
                                  "4041424344454647484950515253545556575859"
                                  "6061626364656667686970717273747576777879"
                                  "8081828384858687888990919293949596979899";

static const uint64_t POW10[20] = {
    1u, 10u, 100u, 1000u, 10000u, 100000u, 1000000u, 10000000u, 100000000u, 1000000000u,
    10000000000u, 100000000000u, 1000000000000u, 10000000000000u, 100000000000000u,
    1000000000000000u, 10000000000000000u, 100000000000000000u, 1000000000000000000u,
    10000000000000000000u,
};

/* Number of decimal digits of v >= 1: floor(log10(2) * bits) or one more. */
static uint32_t decimal_len(uint64_t v)
{
    uint32_t t = ((uint32_t) (64 - __builtin_clzll(v)) * 1233u) >> 12;
    return t + (v >= POW10[t]);
}

/* x < 10^8 as exactly 8 digits; x / 100 for x < 10^4 is (x * 5243) >> 19. */
static void put8(char *dst, uint32_t x)
{
    uint32_t hi = x / 10000, lo = x - 10000 * hi;
    uint32_t a = (hi * 5243u) >> 19, b = (lo * 5243u) >> 19;
    memcpy(dst, DIGIT_PAIRS + 2 * a, 2);
    memcpy(dst + 2, DIGIT_PAIRS + 2 * (hi - 100 * a), 2);
    memcpy(dst + 4, DIGIT_PAIRS + 2 * b, 2);
    memcpy(dst + 6, DIGIT_PAIRS + 2 * (lo - 100 * b), 2);
}

/* Every copy below has a fixed size, so the digit scratch is padded: 8 bytes of room
 * before the digits for whole 8-digit groups, and '0's after them to read past the end. */
#define DIG_ROOM 8
#define DIG_SCRATCH (DIG_ROOM + 40)

/* The n digits of v < 10^17 at dig[0..n); the 8-digit groups start at (dig + n) - 8 and
 * (dig + n) - 16, inside the room before dig. The scratch's '0's after them stay. */
static void put_digits(char *dig, uint64_t v, uint32_t n)
{
    uint64_t hi = v / 100000000u;
    put8(dig + n - 8, (uint32_t) (v - 100000000u * hi));
    if (n > 8) {
        uint64_t top = hi / 100000000u; /* < 10 */
        put8(dig + n - 16, (uint32_t) (hi - 100000000u * top));
        if (n > 16) dig[0] = (char) ('0' + top);
    }
}

/* digits * 10^exp10 in orjson's spelling: at most 23 bytes (no sign), but the fixed-size
 * copies may write scratch up to out[25). */
static size_t spell(char *out, decimal_t d)
{
    char scratch[DIG_SCRATCH], *dig = scratch + DIG_ROOM;
    uint32_t n = decimal_len(d.digits); /* 1..17 */
    int32_t e = d.exp10 + (int32_t) n - 1;
    size_t k;
    memset(scratch, '0', sizeof(scratch));
    put_digits(dig, d.digits, n);
    if (e >= -5 && e < 16) {
        if (e < 0) { /* 0.000ddd: at most 6 + 17 */
            memcpy(out, "0.0000", 6);
            memcpy(out + 1 - e, dig, 17);
            return (size_t) (1 - e) + n;
        }
        memcpy(out, dig, 16); /* the integer part, padded with '0's */
        if ((int32_t) n <= e + 1) { /* ddd000.0 */
            memcpy(out + e + 1, ".0", 2);
            return (size_t) e + 3;
        }
        out[e + 1] = '.'; /* dd.ddd: at most 16 fraction digits, 8 for e >= 8 */
        memcpy(out + e + 2, dig + e + 1, 8);
        if (e < 8) memcpy(out + e + 10, dig + e + 9, 8);
        return n + 1;
    }
    out[0] = dig[0]; /* d.ddde+XX: at most 18 + 5 */
    out[1] = '.';
    memcpy(out + 2, dig + 1, 16);
    k = n > 1 ? n + 1 : 1;
    out[k++] = 'e';
    out[k++] = e < 0 ? '-' : '+';
    if (e < 0) e = -e; /* 6..324 */
    if (e >= 100) {
        out[k++] = (char) ('0' + e / 100);
        e %= 100;
        memcpy(out + k, DIGIT_PAIRS + 2 * e, 2);
        k += 2;
    } else if (e >= 10) {
        memcpy(out + k, DIGIT_PAIRS + 2 * e, 2);
        k += 2;
    } else {
        out[k++] = (char) ('0' + e);
    }
    return k;
}

size_t internal_exr_format_f64(double v, char out[EXR_F64_TEXT_MAX])
{
    uint64_t bits, ieee_m;
    uint32_t ieee_e;
    size_t k = 0;
    decimal_t d;
    memcpy(&bits, &v, sizeof(bits));
    ieee_m = bits & ((1ull << MANTISSA_BITS) - 1);
    ieee_e = (uint32_t) (bits >> MANTISSA_BITS) & 0x7ffu;
    if (ieee_e == 0x7ffu) {
        memcpy(out, "null", 4);
        return 4;
    }
    if (bits >> 63) out[k++] = '-';
    if (ieee_e == 0 && ieee_m == 0) {
        memcpy(out + k, "0.0", 3);
        return k + 3;
    }
    if (!small_int(ieee_m, ieee_e, &d)) d = shortest(ieee_m, ieee_e);
    return k + spell(out + k, d);
}
