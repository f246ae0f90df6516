// Non-finite values, found explicitly. WGSL lets an implementation assume that floats are
// finite: min, max and clamp of a NaN may return a number (NVIDIA's do), and `x != x` may be
// folded to false. A bit pattern cannot be assumed away, so kernels whose answers the host
// reads (the cells' activations, the losses, the norms, the optimizer's skip) test the bits:
// an f32 is a NaN or an infinity exactly when its exponent bits are all ones. The CPU engine
// gets the same answers from IEEE arithmetic (src/cpu).

const EXPONENT_BITS: u32 = 0x7f800000u;
const MAGNITUDE_BITS: u32 = 0x7fffffffu;
const QUIET_BIT: u32 = 0x00400000u;

// 0 for a finite v, else |v|'s bits: EXPONENT_BITS for an infinity, more for a NaN. The max
// over many values is therefore a NaN's bits when one is a NaN, else an infinity's.
fn non_finite_bits(v: f32) -> u32 {
    let magnitude = bitcast<u32>(v) & MAGNITUDE_BITS;
    return select(0u, magnitude, magnitude >= EXPONENT_BITS);
}

fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & MAGNITUDE_BITS) > EXPONENT_BITS;
}

// What an IEEE sum of non-negative terms gives: `total` when every term was finite (worst
// 0; it may still have overflowed to +inf), else a NaN when a term was one, else +inf.
fn with_non_finite(total: f32, worst: u32) -> f32 {
    return select(total, bitcast<f32>(worst), worst != 0u);
}
