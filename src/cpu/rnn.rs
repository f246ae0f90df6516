//! The vanilla RNN over a whole sequence: `h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)`.

use super::{frobenius_norm, input_projection, products_over_rows, CellGrads};
use crate::config::Activation;
use crate::Float;
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, Array3, ArrayRef1, ArrayRef2, ArrayRef3, Axis, Zip};

/// The forward recurrence over all T steps.
///
/// weight_ih [H, I], weight_hh [H, H], bias_ih [H], bias_hh [H], x [T, B, I], h0 [B, H].
/// Returns hs [T+1, B, H] (hs[0] = h0) and gates [T, B, H], which for the RNN is h_t again:
/// backward takes the activation's derivative from its output.
pub fn rnn_forward<F: Float>(
    activation: Activation,
    weight_ih: &ArrayRef2<F>,
    weight_hh: &ArrayRef2<F>,
    bias_ih: &ArrayRef1<F>,
    bias_hh: &ArrayRef1<F>,
    x: &ArrayRef3<F>,
    h0: &ArrayRef2<F>,
) -> (Array3<F>, Array3<F>) {
    let (seq_len, batch, _) = x.dim();
    let hidden = weight_hh.ncols();
    // Starts as W_ih x_t + b_ih for every step; each step adds its recurrent term in place.
    let mut gates = input_projection(weight_ih, bias_ih, x);
    let mut hs = Array3::zeros((seq_len + 1, batch, hidden));
    hs.index_axis_mut(Axis(0), 0).assign(h0);
    for t in 0..seq_len {
        let mut pre_activation = gates.index_axis_mut(Axis(0), t);
        general_mat_mul(
            F::one(),
            &hs.index_axis(Axis(0), t),
            &weight_hh.t(),
            F::one(),
            &mut pre_activation,
        );
        pre_activation.zip_mut_with(bias_hh, |v, &bias| *v = *v + bias);
        pre_activation.mapv_inplace(|v| activate(activation, v));
        hs.index_axis_mut(Axis(0), t + 1).assign(&pre_activation);
    }
    (hs, gates)
}

/// Backpropagation through time over all T steps.
///
/// weight_ih [H, I], weight_hh [H, H], x [T, B, I], hs [T+1, B, H] and gates [T, B, H] from
/// `rnn_forward`; dh_from_head [T, B, H]: the head's gradient w.r.t. each h_t (zero where the
/// head does not read h_t). Per step, dE/dh_t = dh_from_head_t + dgates_{t+1} W_hh, whose norm
/// is recorded; the weight gradients follow from all dgates at once after the loop.
pub fn rnn_backward<F: Float>(
    activation: Activation,
    weight_ih: &ArrayRef2<F>,
    weight_hh: &ArrayRef2<F>,
    x: &ArrayRef3<F>,
    hs: &ArrayRef3<F>,
    gates: &ArrayRef3<F>,
    dh_from_head: &ArrayRef3<F>,
) -> CellGrads<F> {
    let (seq_len, batch, hidden) = dh_from_head.dim();
    // dE/d(pre-activation) of every step: [T, B, H].
    let mut dgates = Array3::zeros(gates.raw_dim());
    let mut grad_norm_h = vec![F::zero(); seq_len];
    let mut dh = Array2::zeros((batch, hidden));
    for t in (0..seq_len).rev() {
        dh.assign(&dh_from_head.index_axis(Axis(0), t));
        if t + 1 < seq_len {
            general_mat_mul(
                F::one(),
                &dgates.index_axis(Axis(0), t + 1),
                weight_hh,
                F::one(),
                &mut dh,
            );
        }
        grad_norm_h[t] = frobenius_norm(&dh);
        Zip::from(dgates.index_axis_mut(Axis(0), t))
            .and(&dh)
            .and(gates.index_axis(Axis(0), t))
            .for_each(|dpre, &dh, &h| *dpre = dh * activation_derivative(activation, h));
    }
    CellGrads {
        grad_norm_h,
        ..products_over_rows(weight_ih, weight_hh, x, hs, &dgates)
    }
}

/// The RNN's nonlinearity.
pub fn activate<F: Float>(activation: Activation, v: F) -> F {
    match activation {
        Activation::Tanh => v.tanh(),
        Activation::Sigmoid => sigmoid(v),
        Activation::Relu => v.max(F::zero()),
    }
}

/// The nonlinearity's derivative, from its output `h = act(v)` (all three allow it, so forward
/// need not keep the pre-activations). ReLU's derivative at 0 is 0, as in PyTorch.
pub fn activation_derivative<F: Float>(activation: Activation, h: F) -> F {
    match activation {
        Activation::Tanh => F::one() - h * h,
        Activation::Sigmoid => h * (F::one() - h),
        Activation::Relu => {
            if h > F::zero() {
                F::one()
            } else {
                F::zero()
            }
        }
    }
}

/// `1 / (1 + e^-v)`; saturates to 0 or 1 without producing NaN.
pub fn sigmoid<F: Float>(v: F) -> F {
    F::one() / (F::one() + (-v).exp())
}
