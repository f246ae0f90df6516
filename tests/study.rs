//! The study's arithmetic, checked by hand, and what the study shows on the CPU engine (no GPU
//! needed).

mod common;

use common::{small_model, EVERY_CELL};
use ndarray::array;
use rnn_wgpu::cpu::{backward, forward};
use rnn_wgpu::init::{largest_singular_value, rescale_to_singular_value};
use rnn_wgpu::internals::parity::random_problem;
use rnn_wgpu::internals::study::{per_step_factor, table_distances, FIT_FLOOR};

/// Norms 8, 4, 2, 1 at t = 1..4: going back from t = 4 (norm 1) to t = 1 (norm 8) each step
/// doubles, so the factor is (8/1)^(1/3) = 2.
#[test]
fn per_step_factor_is_the_geometric_mean_ratio_going_back() {
    let factor = per_step_factor(&[8.0, 4.0, 2.0, 1.0]).unwrap();
    assert!((factor - 2.0).abs() < 1e-12, "{factor}");
    // 1e-3 at t=1, 1e-1 at t=2, 1 at t=3: (1e-3)^(1/2) = 0.0316...
    let factor = per_step_factor(&[1e-3, 1e-1, 1.0]).unwrap();
    assert!((factor - 1e-3f64.sqrt()).abs() < 1e-9, "{factor}");
}

/// Norms that underflowed to zero end the fit: [0, 0, 0.25, 0.5, 1] uses 1 -> 0.5 -> 0.25. So
/// do norms below `FIT_FLOOR`, which a device that flushes subnormal values may read as 0.
#[test]
fn per_step_factor_stops_at_underflow() {
    let factor = per_step_factor(&[0.0, 0.0, 0.25, 0.5, 1.0]).unwrap();
    assert!((factor - 0.5).abs() < 1e-12, "{factor}");
    let below = (FIT_FLOOR / 2.0) as f32;
    let factor = per_step_factor(&[1e-40, below, 0.25, 0.5, 1.0]).unwrap();
    assert!((factor - 0.5).abs() < 1e-12, "{factor}");
    assert_eq!(per_step_factor(&[0.0, 1.0]), None);
    assert_eq!(per_step_factor(&[1.0]), None);
}

/// diag(3, -5, 1) has singular values 5, 3, 1; [[1, 1], [0, 1]] has (1 + sqrt 5) / 2.
#[test]
fn largest_singular_value_of_known_matrices() {
    let sigma =
        largest_singular_value(array![[3.0, 0.0, 0.0], [0.0, -5.0, 0.0], [0.0, 0.0, 1.0]].view());
    assert!((sigma - 5.0).abs() < 1e-9, "{sigma}");
    let sigma = largest_singular_value(array![[1.0, 1.0], [0.0, 1.0]].view());
    let golden = (1.0 + 5f64.sqrt()) / 2.0;
    assert!((sigma - golden).abs() < 1e-9, "{sigma}");
    // A tall [4H, H] matrix, as the LSTM's W_hh: [[2, 0], [0, 1], [0, 0], [1, 0]]: sqrt 5.
    let sigma =
        largest_singular_value(array![[2.0, 0.0], [0.0, 1.0], [0.0, 0.0], [1.0, 0.0]].view());
    assert!((sigma - 5f64.sqrt()).abs() < 1e-9, "{sigma}");
}

#[test]
fn rescaling_sets_the_largest_singular_value() {
    let mut w = array![[0.3f32, -1.2, 0.5], [2.0, 0.1, -0.7]];
    rescale_to_singular_value(&mut w, 0.9);
    let sigma = largest_singular_value(w.mapv(|v| v as f64).view());
    assert!((sigma - 0.9).abs() < 1e-6, "{sigma}");
}

#[test]
fn table_distances_cover_one_two_five_decades_and_the_first_step() {
    assert_eq!(table_distances(100), vec![0, 1, 2, 5, 10, 20, 50, 99]);
    assert_eq!(table_distances(1), vec![0]);
    assert_eq!(table_distances(3), vec![0, 1, 2]);
    assert_eq!(table_distances(7), vec![0, 1, 2, 5, 6]);
}

/// The study shows the cure (on the CPU engine, the README's run): an LSTM whose forget-gate
/// bias is 3 (forget gate near sigmoid(3) = 0.95) keeps ||dE/dc_t|| within a few orders of
/// magnitude over 100 steps, where the tanh RNN's ||dE/dh_t|| falls by more than ten and the
/// LSTM as PyTorch initialises it (the same weights but the bias) vanishes too.
#[test]
fn an_lstm_with_a_forget_bias_of_3_keeps_its_gradient_over_100_steps() {
    use rnn_wgpu::internals::study::{run_vanishing, VanishingOptions};
    use rnn_wgpu::optim::{OptimizerConfig, OptimizerKind};
    let options = VanishingOptions {
        seq_len: 100,
        hidden: 64,
        batch: 32,
        seed: 0,
        scale: None,
        train_steps: 0,
        optimizer: OptimizerConfig::new(OptimizerKind::rmsprop()),
        layers: 1,
        forget_bias: Some(3.0),
    };
    let profiles = run_vanishing(None, &options).unwrap().initial;
    let of = |label: &str| profiles.iter().find(|p| p.label == label).unwrap();
    // orders of magnitude lost from the last step back to the first
    let lost = |norms: &[f32]| (norms[norms.len() - 1] as f64 / norms[0] as f64).log10();
    let cure = of("lstm-forget3");
    let cell = cure.grad_norm_c.as_ref().unwrap();
    let worst = cell.iter().map(|&v| v as f64).fold(f64::INFINITY, f64::min);
    let orders = (cell[cell.len() - 1] as f64 / worst).log10();
    assert!(
        orders < 3.0,
        "lstm-forget3 ||dE/dc||: {orders} orders lost at worst"
    );
    let tanh = lost(&of("rnn-tanh").grad_norm_h);
    assert!(tanh > 10.0, "rnn-tanh ||dE/dh||: {tanh} orders lost");
    let plain = of("lstm");
    assert!(lost(plain.grad_norm_c.as_ref().unwrap()) > 10.0);
    assert_eq!(plain.sigma_max, cure.sigma_max, "the same W_hh");
}

/// The CPU engine's per-step norms in f32 against its f64 reference for gradients whose squares
/// leave f32's range (the head's weights scaled by 1e-24 and by 1e16, as the GPU's test in
/// tests/gpu/parity.rs), every cell: within 1e-5 at every step, where f32 squares would
/// read 0 and inf.
#[test]
fn norms_of_vanishing_and_exploding_gradients_hold_in_f32() {
    for (cell, activation) in EVERY_CELL {
        for scale in [1e-24f32, 1e16] {
            let config = small_model(cell, activation);
            let (mut params, batch) = random_problem(&config, 9, 3, 970);
            params.head_weight.mapv_inplace(|w| w * scale);
            let fwd = forward(&config, &params, &batch).unwrap();
            let f32_norms = backward(&config, &params, &batch, &fwd).grad_norm_h;
            let (params, batch) = (params.cast::<f64>(), batch.cast::<f64>());
            let fwd = forward(&config, &params, &batch).unwrap();
            let f64_norms = backward(&config, &params, &batch, &fwd).grad_norm_h;
            for (t, (&got, &want)) in f32_norms.iter().zip(&f64_norms).enumerate() {
                let error = (got as f64 - want).abs() / want;
                assert!(
                    error < 1e-5,
                    "{cell:?}/{activation:?} x {scale:e} t={}: f32 {got:e} f64 {want:e}",
                    t + 1
                );
            }
        }
    }
}
