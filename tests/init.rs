//! Initialisation schemes: each property checked on the numbers it produces.

use ndarray::{s, Array2};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rnn_wgpu::init::{initialize, largest_singular_value, random_orthogonal, InitConfig, Scheme};
use rnn_wgpu::{Activation, Cell, Loss, ModelConfig, Params, Readout};

fn config(cell: Cell, hidden: usize) -> ModelConfig {
    ModelConfig {
        cell,
        activation: Activation::Tanh,
        input_size: 3,
        hidden_size: hidden,
        output_size: 2,
        readout: Readout::Last,
        loss: Loss::Mse,
        layers: 1,
        bidirectional: false,
        dropout: 0.0,
    }
}

fn init(scheme: Scheme) -> InitConfig {
    InitConfig {
        scheme,
        ..InitConfig::default()
    }
}

#[test]
fn random_orthogonal_is_orthogonal() {
    for n in [1, 3, 17, 65] {
        let q = random_orthogonal(n, &mut StdRng::seed_from_u64(n as u64));
        let err = (&q.t().dot(&q) - &Array2::<f64>::eye(n))
            .mapv(f64::abs)
            .fold(0.0, |a: f64, &b| a.max(b));
        assert!(err < 1e-12, "n={n}: max |Q^T Q - I| = {err:e}");
    }
}

#[test]
fn orthogonal_and_identity_give_unit_singular_values_per_gate_block() {
    for cell in [Cell::Rnn, Cell::Lstm] {
        let cfg = config(cell, 17);
        for scheme in [Scheme::Orthogonal, Scheme::Identity] {
            let p = initialize(&cfg, &init(scheme), &mut StdRng::seed_from_u64(3)).unwrap();
            for g in 0..cell.gates() {
                let block = p.cells[0]
                    .weight_hh
                    .slice(s![g * 17..(g + 1) * 17, ..])
                    .mapv(|v| v as f64);
                let sigma = largest_singular_value(block.view());
                assert!(
                    (sigma - 1.0).abs() < 1e-5,
                    "{cell:?} {scheme:?} gate {g}: {sigma}"
                );
            }
            assert!(p.cells[0]
                .bias_ih
                .iter()
                .chain(&p.cells[0].bias_hh)
                .all(|&b| b == 0.0));
        }
        let p = initialize(&cfg, &init(Scheme::Identity), &mut StdRng::seed_from_u64(3)).unwrap();
        assert_eq!(
            p.cells[0].weight_hh.slice(s![0..17, ..]),
            Array2::<f32>::eye(17)
        );
    }
}

/// Glorot for a gate block [H, I] with H = 17, I = 3: bound sqrt(6 / 20) = 0.5477.
#[test]
fn glorot_stays_inside_its_bound() {
    let p = initialize(
        &config(Cell::Lstm, 17),
        &init(Scheme::Glorot),
        &mut StdRng::seed_from_u64(5),
    )
    .unwrap();
    let bound_ih = (6.0f32 / 20.0).sqrt();
    let bound_hh = (6.0f32 / 34.0).sqrt();
    assert!(p.cells[0].weight_ih.iter().all(|v| v.abs() <= bound_ih));
    assert!(p.cells[0].weight_hh.iter().all(|v| v.abs() <= bound_hh));
    // and it uses most of the range, not a constant
    assert!(p.cells[0]
        .weight_ih
        .iter()
        .any(|v| v.abs() > 0.8 * bound_ih));
}

#[test]
fn pytorch_scheme_is_params_init_uniform() {
    let cfg = config(Cell::Lstm, 5);
    let a = initialize(&cfg, &InitConfig::default(), &mut StdRng::seed_from_u64(9)).unwrap();
    let b = Params::<f32>::init_uniform(&cfg, &mut StdRng::seed_from_u64(9));
    assert_eq!(a, b);
}

/// Every cell of a stacked, bidirectional model gets the scheme and the adjustments: each
/// gate block of each W_hh orthogonal, each cell's forget bias, each W_hh rescaled; layer 1's
/// W_ih [G*H, 2H] Glorot over its own fan-in, sqrt(6 / (2H + H)).
#[test]
fn every_cell_of_a_stacked_model_is_initialised() {
    let hidden = 6;
    let cfg = ModelConfig {
        layers: 2,
        bidirectional: true,
        ..config(Cell::Lstm, hidden)
    };
    let settings = InitConfig {
        scheme: Scheme::Orthogonal,
        hh_scale: None,
        forget_bias: Some(1.0),
    };
    let p = initialize(&cfg, &settings, &mut StdRng::seed_from_u64(2)).unwrap();
    assert_eq!(p.cells.len(), 4);
    for (k, cell) in p.cells.iter().enumerate() {
        for g in 0..4 {
            let block = cell
                .weight_hh
                .slice(s![g * hidden..(g + 1) * hidden, ..])
                .mapv(|v| v as f64);
            let sigma = largest_singular_value(block.view());
            assert!((sigma - 1.0).abs() < 1e-5, "cell {k} gate {g}: {sigma}");
        }
        let forget = s![hidden..2 * hidden];
        assert!(cell.bias_ih.slice(forget).iter().all(|&b| b == 1.0), "{k}");
        assert!(cell.bias_hh.slice(forget).iter().all(|&b| b == 0.0), "{k}");
        let bound = (6.0 / (cell.weight_ih.ncols() + hidden) as f32).sqrt();
        assert!(cell.weight_ih.iter().all(|v| v.abs() <= bound), "{k}");
        assert!(cell.weight_ih.iter().any(|v| v.abs() > 0.8 * bound), "{k}");
    }
    assert_eq!(p.cells[2].weight_ih.ncols(), 2 * hidden);
    assert_ne!(
        p.cells[0].weight_hh, p.cells[1].weight_hh,
        "cells draw their own"
    );

    let scaled = InitConfig {
        scheme: Scheme::PyTorch,
        hh_scale: Some(0.7),
        forget_bias: None,
    };
    let p = initialize(&cfg, &scaled, &mut StdRng::seed_from_u64(2)).unwrap();
    for (k, cell) in p.cells.iter().enumerate() {
        let sigma = largest_singular_value(cell.weight_hh.mapv(|v| v as f64).view());
        assert!((sigma - 0.7).abs() < 1e-5, "cell {k}: {sigma}");
    }
}

#[test]
fn hh_scale_and_forget_bias_adjust_the_drawn_weights() {
    let cfg = config(Cell::Lstm, 9);
    let settings = InitConfig {
        scheme: Scheme::PyTorch,
        hh_scale: Some(0.7),
        forget_bias: Some(1.0),
    };
    let p = initialize(&cfg, &settings, &mut StdRng::seed_from_u64(1)).unwrap();
    let sigma = largest_singular_value(p.cells[0].weight_hh.mapv(|v| v as f64).view());
    assert!((sigma - 0.7).abs() < 1e-5, "{sigma}");
    // forget block is rows H..2H: b_ih carries the whole bias, b_hh none
    assert!(p.cells[0]
        .bias_ih
        .slice(s![9..18])
        .iter()
        .all(|&b| b == 1.0));
    assert!(p.cells[0]
        .bias_hh
        .slice(s![9..18])
        .iter()
        .all(|&b| b == 0.0));
    // other gates untouched (PyTorch's uniform draw, almost surely not exactly 1)
    assert!(p.cells[0]
        .bias_ih
        .slice(s![0..9])
        .iter()
        .all(|&b| b.abs() < 1.0 / 3.0));
}

#[test]
fn bad_settings_are_refused_with_the_option_named() {
    let rnn = config(Cell::Rnn, 4);
    let forget = InitConfig {
        forget_bias: Some(1.0),
        ..InitConfig::default()
    };
    let err = initialize(&rnn, &forget, &mut StdRng::seed_from_u64(0)).unwrap_err();
    assert!(err.to_string().contains("--forget-bias"), "{err}");
    let scale = InitConfig {
        hh_scale: Some(f64::NAN),
        ..InitConfig::default()
    };
    let err = initialize(&rnn, &scale, &mut StdRng::seed_from_u64(0)).unwrap_err();
    assert!(err.to_string().contains("--hh-scale"), "{err}");
    let err = "kaiming".parse::<Scheme>().unwrap_err();
    assert!(err.to_string().contains("orthogonal"), "{err}");
}
