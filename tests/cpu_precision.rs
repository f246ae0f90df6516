//! The CPU engine's f16 mirror (`Precision::F16`: every tensor the GPU stores as f16 rounded to
//! f16 where it is written) and its loss scaling, on the CPU alone: full precision through the
//! new entry points is the old engine bit for bit; in f16 every stored tensor of forward is an
//! f16 value and the results stay near f32's; a power-of-two loss scale keeps gradients that
//! f16 would flush to zero. Awkward sizes (B = 3, T = 17, H = 5 and 17) and ragged lengths.

mod common;

use common::{relative_error, EVERY_CELL};
use rnn_wgpu::cpu::{backward, backward_scaled, forward_in, forward_with, Backward, Forward};
use rnn_wgpu::internals::parity::random_problem;
use rnn_wgpu::Precision;
use rnn_wgpu::{Activation, Batch, Cell, Loss, ModelConfig, Params, Readout, Targets};

/// Sizes no vector width divides: (batch, seq_len, hidden).
const SIZES: [(usize, usize, usize); 2] = [(3, 17, 5), (3, 17, 17)];

/// Bound on `||f16 - f32|| / ||f32||` of the outputs (measured up to 3.8e-4 here): f16 keeps
/// 11 significant bits, a relative error up to 2^-11 = 4.9e-4 per store, and those of 17 steps
/// and two layers partly add up.
const OUTPUTS_TOLERANCE: f64 = 1e-2;

/// Bound on the largest `||f16 - f32|| / ||f32||` over the tensors backward returns (measured
/// up to 1.6e-3 here): each is a sum of products of rounded operands, so a little looser.
const GRADIENTS_TOLERANCE: f64 = 1e-2;

/// Bound on the gradients' change in F16 between loss scales 1 and 1024 (measured up to
/// 4.3e-4): at S = 1 the smallest gradients lose bits in f16's subnormal range.
const LOSS_SCALE_TOLERANCE: f64 = 2e-3;

/// One model of the sweep: a cell in one of two shapes.
#[derive(Clone, Copy, Debug)]
struct Case {
    cell: Cell,
    activation: Activation,
    batch: usize,
    seq_len: usize,
    hidden: usize,
    /// Two bidirectional layers with dropout between them, read at every step
    /// (cross-entropy); else one layer read at its last state (MSE).
    stacked: bool,
}

impl Case {
    fn config(&self) -> ModelConfig {
        let (layers, readout, loss, dropout) = match self.stacked {
            true => (2, Readout::All, Loss::CrossEntropy, 0.25),
            false => (1, Readout::Last, Loss::Mse, 0.0),
        };
        ModelConfig {
            cell: self.cell,
            activation: self.activation,
            input_size: 3,
            hidden_size: self.hidden,
            output_size: 4,
            readout,
            loss,
            layers,
            bidirectional: self.stacked,
            dropout,
        }
    }

    /// PyTorch-initialised parameters and a batch whose sequences end at T, 1 and T/2.
    fn problem(&self) -> (ModelConfig, Params<f32>, Batch<f32>) {
        let config = self.config();
        let (params, mut batch) = random_problem(&config, self.seq_len, self.batch, 16);
        let lengths = (0..self.batch).map(|b| match b {
            0 => self.seq_len,
            1 => 1,
            _ => self.seq_len / 2,
        });
        batch.lengths = Some(lengths.collect());
        (config, params, batch)
    }

    /// forward (training, with dropout where the model has it) and backward in `precision`.
    fn run(&self, precision: Precision, loss_scale: f32) -> (Forward<f32>, Backward<f32>) {
        let (config, params, batch) = self.problem();
        let fwd = forward_in(&config, &params, &batch, Some(5), precision).unwrap();
        let bwd = backward_scaled(&config, &params, &batch, &fwd, loss_scale);
        (fwd, bwd)
    }
}

/// Every cell in every shape.
fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (cell, activation) in EVERY_CELL {
        for (batch, seq_len, hidden) in SIZES {
            for stacked in [false, true] {
                cases.push(Case {
                    cell,
                    activation,
                    batch,
                    seq_len,
                    hidden,
                    stacked,
                });
            }
        }
    }
    cases
}

/// Every tensor forward stores, by name: each cell's hs, cs and gates, the layers' inputs
/// above the first and what the head read.
fn stored_tensors(fwd: &Forward<f32>) -> Vec<(String, Vec<f32>)> {
    let mut tensors = Vec::new();
    for (k, run) in fwd.cells.iter().enumerate() {
        tensors.push((format!("cell {k} hs"), run.hs.iter().copied().collect()));
        tensors.push((
            format!("cell {k} gates"),
            run.gates.iter().copied().collect(),
        ));
        if let Some(cs) = &run.cs {
            tensors.push((format!("cell {k} cs"), cs.iter().copied().collect()));
        }
    }
    for (l, input) in fwd.layer_inputs.iter().enumerate() {
        tensors.push((
            format!("layer {} input", l + 1),
            input.iter().copied().collect(),
        ));
    }
    tensors.push((
        "head input".into(),
        fwd.head_input.iter().copied().collect(),
    ));
    tensors
}

/// `stored_tensors`, the outputs and the loss.
fn forward_tensors(fwd: &Forward<f32>) -> Vec<(String, Vec<f32>)> {
    let mut tensors = stored_tensors(fwd);
    tensors.push(("outputs".into(), fwd.outputs.iter().copied().collect()));
    tensors.push(("loss".into(), vec![fwd.loss]));
    tensors
}

/// Every tensor backward returns, by name.
fn backward_tensors(bwd: &Backward<f32>) -> Vec<(String, Vec<f32>)> {
    let mut tensors: Vec<(String, Vec<f32>)> = (bwd.grads.tensors().into_iter())
        .map(|(name, values)| (name, values.to_vec()))
        .collect();
    tensors.push(("dh0".into(), bwd.dh0.iter().copied().collect()));
    tensors.push(("dx".into(), bwd.dx.iter().copied().collect()));
    tensors.push(("grad_norm_h".into(), bwd.grad_norm_h.clone()));
    if let (Some(dc0), Some(norms)) = (&bwd.dc0, &bwd.grad_norm_c) {
        tensors.push(("dc0".into(), dc0.iter().copied().collect()));
        tensors.push(("grad_norm_c".into(), norms.clone()));
    }
    tensors
}

/// Panics naming the first tensor and element whose bits differ.
fn assert_same_bits(got: &[(String, Vec<f32>)], want: &[(String, Vec<f32>)], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: tensor counts");
    for ((name, g), (_, w)) in got.iter().zip(want) {
        assert_eq!(g.len(), w.len(), "{what}: {name}: lengths");
        if let Some(i) = (0..g.len()).find(|&i| g[i].to_bits() != w[i].to_bits()) {
            panic!("{what}: {name}[{i}]: {:e} against {:e}", g[i], w[i]);
        }
    }
}

/// The first element of `values` that f16 cannot hold, if any.
fn first_not_f16(values: &[f32]) -> Option<(usize, f32)> {
    (values.iter().copied().enumerate()).find(|&(_, v)| Precision::F16.round(v) != v)
}

/// The largest relative error over the tensors of `got` against `want`, and its tensor's name.
fn worst_error(got: &[(String, Vec<f32>)], want: &[(String, Vec<f32>)]) -> (f64, String) {
    (got.iter().zip(want))
        .map(|((name, g), (_, w))| (relative_error(g, w).0, name.clone()))
        .fold(
            (0.0, String::new()),
            |worst, e| if e.0 > worst.0 { e } else { worst },
        )
}

/// The F32 mode through `forward_in` and `backward_scaled` is the engine as it was: the old
/// entry points, which now delegate, agree bit for bit, and so does a loss scale of 1024, since
/// scaling by a power of two is exact in f32 at these magnitudes (backward is linear in
/// dE/doutputs, and sqrt commutes with 4^k).
#[test]
fn f32_through_the_new_entry_points_is_the_old_engine_bit_for_bit() {
    for case in cases() {
        let (config, params, batch) = case.problem();
        let old_fwd = forward_with(&config, &params, &batch, Some(5)).unwrap();
        let old_bwd = backward(&config, &params, &batch, &old_fwd);
        let (fwd, bwd) = case.run(Precision::F32, 1.0);
        let what = format!("{case:?}");
        assert_eq!(fwd.precision, Precision::F32);
        assert_same_bits(&forward_tensors(&fwd), &forward_tensors(&old_fwd), &what);
        assert_same_bits(&backward_tensors(&bwd), &backward_tensors(&old_bwd), &what);
        let (_, scaled) = case.run(Precision::F32, 1024.0);
        let what = format!("{what}, loss scale 1024");
        assert_same_bits(
            &backward_tensors(&scaled),
            &backward_tensors(&old_bwd),
            &what,
        );
    }
}

/// In F16, every tensor forward stores is an f16 value, and so is dx where one cell alone
/// writes it (one layer, one direction: no sum of two rounded halves). The same tensors in F32
/// are not, or the check would prove nothing.
#[test]
fn f16_forward_stores_only_f16_values() {
    for case in cases() {
        let (fwd, bwd) = case.run(Precision::F16, 1.0);
        assert_eq!(fwd.precision, Precision::F16);
        for (name, values) in stored_tensors(&fwd) {
            if let Some((i, v)) = first_not_f16(&values) {
                panic!("{case:?}: {name}[{i}] = {v:e} is not an f16 value");
            }
        }
        if !case.stacked {
            let dx: Vec<f32> = bwd.dx.iter().copied().collect();
            assert_eq!(first_not_f16(&dx), None, "{case:?}: dx");
        }
        let (full, _) = case.run(Precision::F32, 1.0);
        let hs: Vec<f32> = full.cells[0].hs.iter().copied().collect();
        assert!(first_not_f16(&hs).is_some(), "{case:?}: f32's hs fit f16");
    }
}

/// F16 outputs stay within `OUTPUTS_TOLERANCE` of F32's and differ from them; the gradients
/// (loss scale 1024) within `GRADIENTS_TOLERANCE`. Run with --nocapture for the errors.
#[test]
fn f16_stays_near_f32_and_differs_from_it() {
    for case in cases() {
        let (half_fwd, half_bwd) = case.run(Precision::F16, 1024.0);
        let (full_fwd, full_bwd) = case.run(Precision::F32, 1.0);
        let outputs = |f: &Forward<f32>| f.outputs.iter().copied().collect::<Vec<f32>>();
        let (error, worst) = relative_error(&outputs(&half_fwd), &outputs(&full_fwd));
        let (grad_error, grad_name) =
            worst_error(&backward_tensors(&half_bwd), &backward_tensors(&full_bwd));
        println!("{case:?}: outputs {error:.2e}, worst gradient {grad_name} {grad_error:.2e}");
        assert!(
            error < OUTPUTS_TOLERANCE,
            "{case:?}: outputs {error:.2e}; worst element {worst}"
        );
        assert!(error > 0.0, "{case:?}: f16 outputs equal f32's");
        assert!(
            grad_error < GRADIENTS_TOLERANCE,
            "{case:?}: {grad_name} {grad_error:.2e}"
        );
    }
}

/// With f16 storage, a loss scale of 1024 changes the (unscaled) gradients by less than
/// `LOSS_SCALE_TOLERANCE`, and does change them (values below f16's normal range, 6.1e-5,
/// keep more bits scaled).
#[test]
fn f16_gradients_agree_under_a_loss_scale_of_1024() {
    for case in cases() {
        let (_, plain) = case.run(Precision::F16, 1.0);
        let (_, scaled) = case.run(Precision::F16, 1024.0);
        let (error, name) = worst_error(&backward_tensors(&scaled), &backward_tensors(&plain));
        println!("{case:?}: worst {name} {error:.2e}");
        assert!(error < LOSS_SCALE_TOLERANCE, "{case:?}: {name} {error:.2e}");
        assert!(error > 0.0, "{case:?}: the loss scale changed nothing");
    }
}

/// Gradients below half f16's smallest subnormal (2^-25 = 3e-8) vanish when stored unscaled:
/// with the head's weight and the targets scaled by 1e-4, dE/dh arriving from the head is
/// ~1e-9, so at S = 1 every recurrent gradient, dh0, dx and norm is exactly 0 (the head's,
/// kept in f32, are not), while at S = 2^16 they survive and, unscaled, stay within 1e-1 of
/// f32's. Scaled, the stores still sit near or in f16's subnormal range (below 6.1e-5), where
/// they keep few bits: measured up to 3.3e-2 (the LSTM's dx, stored at ~3e-6).
#[test]
fn a_loss_scale_of_2_16_keeps_gradients_that_f16_flushes_to_zero() {
    for (cell, activation) in EVERY_CELL {
        let case = Case {
            cell,
            activation,
            batch: 3,
            seq_len: 17,
            hidden: 17,
            stacked: false,
        };
        let (config, mut params, mut batch) = case.problem();
        params.head_weight.mapv_inplace(|w| w * 1e-4);
        params.head_bias.fill(0.0);
        let Targets::Values(targets) = &mut batch.targets else {
            unreachable!("an MSE case")
        };
        targets.mapv_inplace(|t| t * 1e-4);
        let run = |precision, loss_scale| {
            let fwd = forward_in(&config, &params, &batch, None, precision).unwrap();
            backward_scaled(&config, &params, &batch, &fwd, loss_scale)
        };
        let reference = backward_tensors(&run(Precision::F32, 1.0));
        let flushed = backward_tensors(&run(Precision::F16, 1.0));
        let kept = backward_tensors(&run(Precision::F16, 65536.0));
        for (((name, full), (_, lost)), (_, scaled)) in reference.iter().zip(&flushed).zip(&kept) {
            let (error, _) = relative_error(scaled, full);
            let largest = full.iter().fold(0f32, |m, v| m.max(v.abs()));
            println!("{cell:?} {activation:?} {name}: largest {largest:.1e}, S = 2^16 {error:.2e}");
            assert!(full.iter().any(|&g| g != 0.0), "{name}: f32's is 0");
            let vanished = lost.iter().all(|&g| g == 0.0);
            assert_eq!(vanished, !name.starts_with("head."), "{name} at S = 1");
            assert!(error < 1e-1, "{cell:?} {name}: {error:.2e} at S = 2^16");
        }
    }
}

/// A 1x1 model's results, for the scalar references below: per step [T] or per gate [G].
#[derive(Debug, Default)]
struct Scalars {
    hs: Vec<f64>,
    cs: Vec<f64>,
    gates: Vec<f64>,
    outputs: Vec<f64>,
    dweight_ih: Vec<f64>,
    dweight_hh: Vec<f64>,
    dbias_ih: Vec<f64>,
    dbias_hh: Vec<f64>,
    dhead: [f64; 2],
    dh0: f64,
    dc0: Option<f64>,
    dx: Vec<f64>,
    grad_norm_h: Vec<f64>,
    grad_norm_c: Vec<f64>,
}

/// A 1x1 model (input, hidden and output 1, the head on every step, MSE) of `cell`, with
/// PyTorch's initialisation and a batch of one sequence of 7 steps, in f64.
fn scalar_problem(cell: Cell) -> (ModelConfig, Params<f64>, Batch<f64>) {
    use rand::SeedableRng;
    let config = ModelConfig {
        cell,
        activation: Activation::Tanh,
        input_size: 1,
        hidden_size: 1,
        output_size: 1,
        readout: Readout::All,
        loss: Loss::Mse,
        layers: 1,
        bidirectional: false,
        dropout: 0.0,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(23);
    let params = Params::init_uniform(&config, &mut rng);
    let batch = Batch::random(&config, 40, 1, &mut rng);
    (config, params, batch)
}

/// What the scalar references read from a 1x1 problem: x_t, h0, c0, the targets, the
/// weights' and biases' G entries (and the biases' sum), the head's weight and bias.
struct ScalarInputs {
    x: Vec<f64>,
    h0: f64,
    c0: f64,
    targets: Vec<f64>,
    weight_ih: Vec<f64>,
    weight_hh: Vec<f64>,
    bias_ih: Vec<f64>,
    bias_hh: Vec<f64>,
    head: [f64; 2],
}

impl ScalarInputs {
    fn of(params: &Params<f64>, batch: &Batch<f64>) -> Self {
        let Targets::Values(targets) = &batch.targets else {
            unreachable!("MSE")
        };
        let cell = &params.cells[0];
        ScalarInputs {
            x: batch.x.iter().copied().collect(),
            h0: batch.h0.as_ref().unwrap()[[0, 0]],
            c0: batch.c0.as_ref().map_or(0.0, |c0| c0[[0, 0]]),
            targets: targets.iter().copied().collect(),
            weight_ih: cell.weight_ih.iter().copied().collect(),
            weight_hh: cell.weight_hh.iter().copied().collect(),
            bias_ih: cell.bias_ih.to_vec(),
            bias_hh: cell.bias_hh.to_vec(),
            head: [params.head_weight[[0, 0]], params.head_bias[0]],
        }
    }

    /// dE/dy_t times `scale`: 2 (y_t - target_t) / T.
    fn doutputs(&self, outputs: &[f64], scale: f64) -> Vec<f64> {
        let count = outputs.len() as f64;
        (outputs.iter().zip(&self.targets))
            .map(|(y, target)| scale * 2.0 * (y - target) / count)
            .collect()
    }
}

/// `Precision::F16.round` in f64.
fn f16(v: f64) -> f64 {
    Precision::F16.round(v)
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// The head's gradients [weight, bias] and the rounded dE/dh_t it passes down, from the
/// scaled dE/dy_t and the states h_1..h_T.
fn scalar_head_backward(dy: &[f64], hs: &[f64], head_weight: f64) -> ([f64; 2], Vec<f64>) {
    let dweight = dy.iter().zip(&hs[1..]).map(|(d, h)| d * h).sum();
    let dh_head = dy.iter().map(|d| f16(d * head_weight)).collect();
    ([dweight, dy.iter().sum()], dh_head)
}

/// The rounded dgates [T][G] of the input product and of the recurrent one (the same but for
/// the GRU).
type DGates = (Vec<Vec<f64>>, Vec<Vec<f64>>);

/// The weight gradients and dx from `DGates`, the rounded x, `out.hs` and the rounded W_ih.
fn scalar_row_products((ih, hh): &DGates, x: &[f64], wi: &[f64], out: &mut Scalars) {
    let (gates, hs) = (wi.len(), &out.hs);
    let over_steps = |f: &dyn Fn(usize) -> f64| (0..x.len()).map(f).sum::<f64>();
    out.dweight_ih = (0..gates)
        .map(|k| over_steps(&|t| ih[t][k] * x[t]))
        .collect();
    out.dweight_hh = (0..gates)
        .map(|k| over_steps(&|t| hh[t][k] * hs[t]))
        .collect();
    out.dbias_ih = (0..gates).map(|k| over_steps(&|t| ih[t][k])).collect();
    out.dbias_hh = (0..gates).map(|k| over_steps(&|t| hh[t][k])).collect();
    out.dx = (ih.iter())
        .map(|d| f16(d.iter().zip(wi).map(|(d, w)| d * w).sum()))
        .collect();
}

/// The 1x1 tanh RNN in f16 storage with every rounding written out, as the GPU stores:
/// x, W_ih, W_hh, h0 rounded; per step pre = r(r(x W_ih + b_ih) + W_hh h_{t-1}),
/// h_t = r(tanh(pre + b_hh)); backward from dE/dh_t = r(dy_t W_out) + W_hh dpre_{t+1} (its norm
/// from the rounded value), dpre_t = r(dE/dh_t (1 - h_t^2)), dx_t = r(dpre_t W_ih); everything
/// returned divided by the loss scale.
fn scalar_rnn(inputs: &ScalarInputs, scale: f64) -> Scalars {
    let x: Vec<f64> = inputs.x.iter().map(|&x| f16(x)).collect();
    let (wi, wh) = (f16(inputs.weight_ih[0]), f16(inputs.weight_hh[0]));
    let mut out = Scalars {
        hs: vec![f16(inputs.h0)],
        ..Scalars::default()
    };
    for &x in &x {
        let pre = f16(f16(x * wi + inputs.bias_ih[0]) + wh * out.hs.last().unwrap());
        out.hs.push(f16((pre + inputs.bias_hh[0]).tanh()));
    }
    out.gates = out.hs[1..].to_vec();
    out.outputs = out
        .gates
        .iter()
        .map(|h| inputs.head[0] * h + inputs.head[1])
        .collect();
    let dy = inputs.doutputs(&out.outputs, scale);
    let (dhead, dh_head) = scalar_head_backward(&dy, &out.hs, inputs.head[0]);
    let mut dgates = vec![vec![0.0]; x.len()];
    let mut dgate_next = 0.0;
    out.grad_norm_h = vec![0.0; x.len()];
    for t in (0..x.len()).rev() {
        let dh = dh_head[t] + wh * dgate_next;
        out.grad_norm_h[t] = f16(dh).abs();
        dgate_next = f16(dh * (1.0 - out.hs[t + 1] * out.hs[t + 1]));
        dgates[t][0] = dgate_next;
    }
    out.dh0 = wh * dgate_next;
    scalar_row_products(&(dgates.clone(), dgates), &x, &[wi], &mut out);
    out.dhead = dhead;
    unscale_scalars(&mut out, scale);
    out
}

/// The 1x1 LSTM likewise: per step each gate's pre = r(r(x W_ih + b_ih) + W_hh h_{t-1}), the
/// activations and c_t = f c_{t-1} + i g, h_t = o tanh(c_t) in full precision, then the gates,
/// c_t and h_t stored rounded; backward reads those, keeps dE/dh_t, dE/dc_t and the carry
/// dc_t f_t unrounded (the norms from the rounded totals) and rounds each dgate.
fn scalar_lstm(inputs: &ScalarInputs, scale: f64) -> Scalars {
    let x: Vec<f64> = inputs.x.iter().map(|&x| f16(x)).collect();
    let wi: Vec<f64> = inputs.weight_ih.iter().map(|&w| f16(w)).collect();
    let wh: Vec<f64> = inputs.weight_hh.iter().map(|&w| f16(w)).collect();
    let mut out = Scalars {
        hs: vec![f16(inputs.h0)],
        cs: vec![f16(inputs.c0)],
        ..Scalars::default()
    };
    for (t, &x) in x.iter().enumerate() {
        let pre = |k: usize| {
            f16(f16(x * wi[k] + inputs.bias_ih[k]) + wh[k] * out.hs[t]) + inputs.bias_hh[k]
        };
        let (i, f, g, o) = (
            sigmoid(pre(0)),
            sigmoid(pre(1)),
            pre(2).tanh(),
            sigmoid(pre(3)),
        );
        let c = f * out.cs[t] + i * g;
        out.hs.push(f16(o * c.tanh()));
        out.cs.push(f16(c));
        out.gates.extend([i, f, g, o].map(f16));
    }
    out.outputs = out.hs[1..]
        .iter()
        .map(|h| inputs.head[0] * h + inputs.head[1])
        .collect();
    let dy = inputs.doutputs(&out.outputs, scale);
    let (dhead, dh_head) = scalar_head_backward(&dy, &out.hs, inputs.head[0]);
    let mut dgates = vec![vec![0.0; 4]; x.len()];
    let mut carry = 0.0;
    (out.grad_norm_h, out.grad_norm_c) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    let recurrent = |d: &[f64]| d.iter().zip(&wh).map(|(d, w)| d * w).sum::<f64>();
    for t in (0..x.len()).rev() {
        let from_next = dgates.get(t + 1).map_or(0.0, |d| recurrent(d));
        let dh = dh_head[t] + from_next;
        let [i, f, g, o] = [0, 1, 2, 3].map(|k| out.gates[4 * t + k]);
        let tanh_c = out.cs[t + 1].tanh();
        let dc = dh * o * (1.0 - tanh_c * tanh_c) + carry;
        (out.grad_norm_h[t], out.grad_norm_c[t]) = (f16(dh).abs(), f16(dc).abs());
        let d_i = dc * g * i * (1.0 - i);
        let d_f = dc * out.cs[t] * f * (1.0 - f);
        let (d_g, d_o) = (dc * i * (1.0 - g * g), dh * tanh_c * o * (1.0 - o));
        dgates[t] = [d_i, d_f, d_g, d_o].map(f16).to_vec();
        carry = dc * f;
    }
    (out.dh0, out.dc0) = (recurrent(&dgates[0]), Some(carry));
    scalar_row_products(&(dgates.clone(), dgates), &x, &wi, &mut out);
    out.dhead = dhead;
    unscale_scalars(&mut out, scale);
    out
}

/// The 1x1 GRU likewise: both products rounded apart, r(x W_ih + b_ih) and r(W_hh h_{t-1}); the
/// gates r, z, n and W_hn h + b_hn and the state stored rounded; backward keeps dE/dh_t and the
/// direct path z dE/dh_t unrounded (the norm from the rounded total) and rounds the dgates of
/// the input product and of the recurrent one.
fn scalar_gru(inputs: &ScalarInputs, scale: f64) -> Scalars {
    let x: Vec<f64> = inputs.x.iter().map(|&x| f16(x)).collect();
    let wi: Vec<f64> = inputs.weight_ih.iter().map(|&w| f16(w)).collect();
    let wh: Vec<f64> = inputs.weight_hh.iter().map(|&w| f16(w)).collect();
    let (b_ih, b_hh) = (&inputs.bias_ih, &inputs.bias_hh);
    let mut out = Scalars {
        hs: vec![f16(inputs.h0)],
        ..Scalars::default()
    };
    for (t, &x) in x.iter().enumerate() {
        let input = |k: usize| f16(x * wi[k] + b_ih[k]);
        let recurrent = |k: usize| f16(wh[k] * out.hs[t]);
        let r = sigmoid(input(0) + recurrent(0) + b_hh[0]);
        let z = sigmoid(input(1) + recurrent(1) + b_hh[1]);
        let hn = recurrent(2) + b_hh[2];
        let n = (input(2) + r * hn).tanh();
        out.hs.push(f16((1.0 - z) * n + z * out.hs[t]));
        out.gates.extend([r, z, n, hn].map(f16));
    }
    out.outputs = out.hs[1..]
        .iter()
        .map(|h| inputs.head[0] * h + inputs.head[1])
        .collect();
    let dy = inputs.doutputs(&out.outputs, scale);
    let (dhead, dh_head) = scalar_head_backward(&dy, &out.hs, inputs.head[0]);
    let (mut ih, mut hh) = (vec![vec![]; x.len()], vec![vec![]; x.len()]);
    let mut dh_prev = 0.0;
    out.grad_norm_h = vec![0.0; x.len()];
    for t in (0..x.len()).rev() {
        let dh = dh_prev + dh_head[t];
        out.grad_norm_h[t] = f16(dh).abs();
        let [r, z, n, hn] = [0, 1, 2, 3].map(|k| out.gates[4 * t + k]);
        let dn = dh * (1.0 - z) * (1.0 - n * n);
        let dz = dh * (out.hs[t] - n) * z * (1.0 - z);
        let dr = dn * hn * r * (1.0 - r);
        ih[t] = [dr, dz, dn].map(f16).to_vec();
        hh[t] = [dr, dz, dn * r].map(f16).to_vec();
        dh_prev = dh * z + hh[t].iter().zip(&wh).map(|(d, w)| d * w).sum::<f64>();
    }
    out.dh0 = dh_prev;
    scalar_row_products(&(ih, hh), &x, &wi, &mut out);
    out.dhead = dhead;
    unscale_scalars(&mut out, scale);
    out
}

/// Divides the gradients and norms of `out` by the loss scale.
fn unscale_scalars(out: &mut Scalars, scale: f64) {
    let all = (out.dweight_ih.iter_mut())
        .chain(&mut out.dweight_hh)
        .chain(&mut out.dbias_ih)
        .chain(&mut out.dbias_hh)
        .chain(&mut out.dhead)
        .chain([&mut out.dh0])
        .chain(&mut out.dc0)
        .chain(&mut out.dx)
        .chain(&mut out.grad_norm_h)
        .chain(&mut out.grad_norm_c);
    all.for_each(|v| *v /= scale);
}

/// The engine's results of a 1x1 model as `Scalars`.
fn engine_scalars(fwd: &Forward<f64>, bwd: &Backward<f64>) -> Scalars {
    let run = &fwd.cells[0];
    let cell = &bwd.grads.cells[0];
    let flat = |a: &ndarray::ArrayRef2<f64>| a.iter().copied().collect::<Vec<f64>>();
    Scalars {
        hs: run.hs.iter().copied().collect(),
        cs: run.cs.iter().flatten().copied().collect(),
        gates: run.gates.iter().copied().collect(),
        outputs: flat(&fwd.outputs),
        dweight_ih: flat(&cell.weight_ih),
        dweight_hh: flat(&cell.weight_hh),
        dbias_ih: cell.bias_ih.to_vec(),
        dbias_hh: cell.bias_hh.to_vec(),
        dhead: [bwd.grads.head_weight[[0, 0]], bwd.grads.head_bias[0]],
        dh0: bwd.dh0[[0, 0]],
        dc0: bwd.dc0.as_ref().map(|dc0| dc0[[0, 0]]),
        dx: bwd.dx.iter().copied().collect(),
        grad_norm_h: bwd.grad_norm_h.clone(),
        grad_norm_c: bwd.grad_norm_c.clone().unwrap_or_default(),
    }
}

/// The largest `|got - want| / max|want|` over the fields, with the field's name.
fn scalars_error(got: &Scalars, want: &Scalars) -> (f64, &'static str) {
    let fields: [(&str, &[f64], &[f64]); 14] = [
        ("hs", &got.hs, &want.hs),
        ("cs", &got.cs, &want.cs),
        ("gates", &got.gates, &want.gates),
        ("outputs", &got.outputs, &want.outputs),
        ("dweight_ih", &got.dweight_ih, &want.dweight_ih),
        ("dweight_hh", &got.dweight_hh, &want.dweight_hh),
        ("dbias_ih", &got.dbias_ih, &want.dbias_ih),
        ("dbias_hh", &got.dbias_hh, &want.dbias_hh),
        ("dhead", &got.dhead, &want.dhead),
        ("dh0", &[got.dh0], &[want.dh0]),
        ("dc0", got.dc0.as_slice(), want.dc0.as_slice()),
        ("dx", &got.dx, &want.dx),
        ("grad_norm_h", &got.grad_norm_h, &want.grad_norm_h),
        ("grad_norm_c", &got.grad_norm_c, &want.grad_norm_c),
    ];
    fields
        .into_iter()
        .map(|(name, g, w)| {
            assert_eq!(g.len(), w.len(), "{name}: lengths");
            let scale = w.iter().fold(1e-300f64, |m, v| m.max(v.abs()));
            let diff = g.iter().zip(w).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
            (diff / scale, name)
        })
        .fold((0.0, ""), |worst, e| if e.0 > worst.0 { e } else { worst })
}

/// The engine in f64 (whose tanh and sigmoid are the standard library's, as the references'),
/// F16 storage, loss scale 1024, against `scalar_rnn`, `scalar_lstm` and `scalar_gru` over 40
/// steps (enough that each rounding changes some stored value): every store where the
/// GPU makes it, checked one by one, to 1e-12 (f64 sums in another order). The same engine
/// storing f32 is far from them, so a missing or extra rounding shows.
#[test]
fn one_unit_models_round_where_the_gpu_stores() {
    for (cell, reference) in [
        (Cell::Rnn, scalar_rnn as fn(&ScalarInputs, f64) -> Scalars),
        (Cell::Lstm, scalar_lstm),
        (Cell::Gru, scalar_gru),
    ] {
        let (config, params, batch) = scalar_problem(cell);
        let want = reference(&ScalarInputs::of(&params, &batch), 1024.0);
        let engine = |precision| {
            let fwd = forward_in(&config, &params, &batch, None, precision).unwrap();
            let bwd = backward_scaled(&config, &params, &batch, &fwd, 1024.0);
            engine_scalars(&fwd, &bwd)
        };
        let (error, field) = scalars_error(&engine(Precision::F16), &want);
        assert!(error < 1e-12, "{cell:?}: {field} off by {error:.2e}");
        let (error, field) = scalars_error(&engine(Precision::F32), &want);
        assert!(
            error > 1e-5,
            "{cell:?}: f32 storage matches f16's ({field} {error:.2e})"
        );
    }
}
