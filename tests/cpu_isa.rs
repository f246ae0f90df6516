//! The CPU engine's vector paths (`cpu::Isa`): each one this machine has runs when
//! `RNN_WGPU_CPU_ISA` caps the engine to it, says so, and computes the same gradients. The cells'
//! functions give the same bits on every path; the packed W_hh product (FMA) rounds its sums
//! otherwise than the baseline's matrixmultiply, within f32 rounding.

mod common;

use common::{assert_params_close, TempDir};
use ndarray::{Array2, Array3};
use ndarray_npy::WriteNpyExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rnn_wgpu::checkpoint::{self, Checkpoint, LoadOverrides};
use rnn_wgpu::cpu::{Isa, ISA_VAR};
use rnn_wgpu::{Activation, Cell, Loss, ModelConfig, Params, Readout};
use std::process::Command;

/// `rnn-wgpu grad --device cpu` under `RNN_WGPU_CPU_ISA=isa`: the gradients and the device line.
fn grad_on(dir: &TempDir, isa: Isa) -> (Params<f32>, String) {
    let out = dir.join(&format!("grads-{}.safetensors", isa.name()));
    let output = Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
        .env(ISA_VAR, isa.name())
        .args(["grad", "--device", "cpu", "--model"])
        .arg(dir.join("model.safetensors"))
        .args(["--input".as_ref(), dir.join("x.npy").as_os_str()])
        .args(["--target".as_ref(), dir.join("y.npy").as_os_str()])
        .args(["--out".as_ref(), out.as_os_str()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let grads = checkpoint::load(&out, &LoadOverrides::default()).unwrap();
    (grads.params, stdout)
}

#[test]
fn every_vector_path_this_cpu_has_computes_the_same_gradients() {
    let dir = TempDir::new("cpu-isa");
    // H = 65: the recurrent product runs the packed kernel (tail panels included).
    let config = ModelConfig {
        cell: Cell::Lstm,
        activation: Activation::Tanh,
        input_size: 3,
        hidden_size: 65,
        output_size: 2,
        readout: Readout::Last,
        loss: Loss::Mse,
        layers: 1,
        bidirectional: false,
        dropout: 0.0,
    };
    let mut rng = StdRng::seed_from_u64(17);
    let params = Params::<f32>::init_uniform(&config, &mut rng);
    checkpoint::save(
        &dir.join("model.safetensors"),
        &Checkpoint::new(config, params),
    )
    .unwrap();
    let x = Array3::<f32>::from_shape_fn((17, 5, 3), |_| rng.random_range(-1.0..1.0));
    let y = Array2::<f32>::from_shape_fn((5, 2), |_| rng.random_range(-1.0..1.0));
    x.write_npy(std::fs::File::create(dir.join("x.npy")).unwrap())
        .unwrap();
    y.write_npy(std::fs::File::create(dir.join("y.npy")).unwrap())
        .unwrap();
    let widest = Isa::detected();
    let (reference, _) = grad_on(&dir, Isa::Baseline);
    for isa in [Isa::Baseline, Isa::Avx2, Isa::Avx512] {
        let (grads, said) = grad_on(&dir, isa);
        // A path the CPU lacks falls back to the widest it has.
        let ran = isa.min(widest);
        assert!(
            said.contains(&format!(", {})", ran.name())),
            "{ISA_VAR}={}: {said}",
            isa.name()
        );
        assert_params_close(&grads, &reference, 1e-5, &format!("{} path", ran.name()));
    }
}

#[test]
fn an_unknown_path_is_refused_by_name() {
    let output = Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
        .env(ISA_VAR, "sse9")
        .arg("devices")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("{ISA_VAR}='sse9'")) && stderr.contains("avx2"),
        "{stderr}"
    );
}
