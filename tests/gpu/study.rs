//! The study shows what the theory guarantees: with sigma_max(W_hh) below 1/gamma, every step
//! back multiplies a vanilla RNN's ||dE/dh|| by at most sigma_max * gamma (Pascanu et al.,
//! 2013: ||dh_{t-1}|| <= ||W_hh|| * max act' * ||dh_t|| when the loss sits on the last step).

use super::{gpu, seed};
use rnn_wgpu::internals::study::{run_vanishing, VanishingOptions};
use rnn_wgpu::optim::{OptimizerConfig, OptimizerKind};

#[test]
fn rnn_norms_shrink_at_least_as_fast_as_the_bound_says() {
    let scale = 0.9;
    let options = VanishingOptions {
        seq_len: 40,
        hidden: 17,
        batch: 5,
        seed: seed(31),
        scale: Some(scale),
        train_steps: 0,
        optimizer: OptimizerConfig::new(OptimizerKind::rmsprop()),
        layers: 1,
        forget_bias: None,
    };
    let profiles = run_vanishing(Some(gpu()), &options).unwrap().initial;
    assert_eq!(profiles.len(), 4);
    for p in &profiles {
        assert_eq!(p.grad_norm_h.len(), 40, "{}", p.label);
        assert!(
            (p.sigma_max - scale).abs() < 1e-4,
            "{}: sigma_max {}",
            p.label,
            p.sigma_max
        );
        let Some(bound) = p.vanishing_bound else {
            // Gated cells have no such bound; the LSTM also reports ||dE/dc_t||.
            assert_eq!(
                p.grad_norm_c.is_some(),
                p.config.cell == rnn_wgpu::Cell::Lstm,
                "{}: ||dE/dc_t||",
                p.label
            );
            continue;
        };
        let gamma = 1.0 / bound;
        // every single step back, not only on average (f32 rounding allowance 1e-5)
        for t in 1..p.grad_norm_h.len() {
            let (earlier, later) = (p.grad_norm_h[t - 1] as f64, p.grad_norm_h[t] as f64);
            assert!(
                earlier <= later * scale * gamma * (1.0 + 1e-5),
                "{}: ||dE/dh_{t}|| = {earlier:e} > {scale} * {gamma} * ||dE/dh_{}|| = {later:e}",
                p.label,
                t + 1
            );
        }
        let factor = p.per_step_factor().unwrap();
        assert!(factor <= scale * gamma, "{}: factor {factor}", p.label);
    }
}

/// `vanishing --layers 2`: a profile per layer of every model, T steps each, the same on the
/// GPU as on the CPU reference; the top layer's gradient at the last step comes straight from
/// the head, the bottom layer's through the top layer's input weights.
#[test]
fn every_layer_gets_its_own_profile() {
    let options = VanishingOptions {
        seq_len: 23,
        hidden: 9,
        batch: 3,
        seed: seed(37),
        scale: None,
        train_steps: 0,
        optimizer: OptimizerConfig::new(OptimizerKind::rmsprop()),
        layers: 2,
        forget_bias: None,
    };
    let on_gpu = run_vanishing(Some(gpu()), &options).unwrap().initial;
    let on_cpu = run_vanishing(None, &options).unwrap().initial;
    let labels: Vec<&str> = on_gpu.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "rnn-sigmoid-l0",
            "rnn-sigmoid-l1",
            "rnn-tanh-l0",
            "rnn-tanh-l1",
            "lstm-l0",
            "lstm-l1",
            "gru-l0",
            "gru-l1"
        ]
    );
    for (g, c) in on_gpu.iter().zip(&on_cpu) {
        assert_eq!(g.grad_norm_h.len(), 23, "{}", g.label);
        assert_eq!(g.grad_norm_c.is_some(), g.label.starts_with("lstm"));
        for (t, (a, b)) in g.grad_norm_h.iter().zip(&c.grad_norm_h).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs() + 1e-30,
                "{} t={}: gpu {a} cpu {b}",
                g.label,
                t + 1
            );
        }
    }
    // Layers of one model share the loss but not their profiles.
    assert_eq!(on_gpu[0].loss, on_gpu[1].loss);
    assert_ne!(on_gpu[0].grad_norm_h, on_gpu[1].grad_norm_h);
}
