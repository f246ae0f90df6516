//! The element types of the CPU engine, in a module of their own: every module names `Float`
//! from here, none through the crate root, which re-exports it.

/// The element types the CPU reference runs in: f32 (as the GPU) and f64 (gradient checks).
pub trait Float:
    num_traits::Float
    + num_traits::FromPrimitive
    + ndarray::LinalgScalar
    + ndarray::ScalarOperand
    + std::fmt::Debug
    + std::fmt::Display
    + Send
    + Sync
    + 'static
{
}

impl Float for f32 {}
impl Float for f64 {}
