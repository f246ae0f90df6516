//! Text generation from a character-level model, one byte at a time, on the CPU reference
//! (a step of batch 1 is far too small to be worth a GPU submission).

use crate::config::{Cell, ModelConfig, Readout};
use crate::cpu;
use crate::data::{Batch, Targets};
use crate::error::Error;
use crate::params::Params;
use crate::tasks::Vocabulary;
use ndarray::{Array2, Array3};
use rand::Rng;

/// Feeds `prime` through the model, then draws `length` bytes from
/// `softmax(logits / temperature)`, each fed back as the next input. Returns the drawn bytes.
pub fn sample_text(
    config: &ModelConfig,
    params: &Params<f32>,
    vocabulary: &Vocabulary,
    prime: &[u8],
    length: usize,
    temperature: f32,
    rng: &mut impl Rng,
) -> Result<Vec<u8>, Error> {
    let classes = vocabulary.len();
    if config.input_size != classes || config.output_size != classes {
        return Err(Error::Config(format!(
            "the model takes {} inputs and gives {} outputs, but the vocabulary has {classes} symbols",
            config.input_size, config.output_size
        )));
    }
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(Error::Value(format!(
            "--temperature must be > 0, got {temperature}"
        )));
    }
    if prime.is_empty() {
        return Err(Error::Value(
            "--prime must hold at least one character".into(),
        ));
    }
    if config.bidirectional {
        return Err(Error::Config(
            "a bidirectional model reads each sequence from its end too, so it cannot generate \
             text one character at a time"
                .into(),
        ));
    }
    // One step at a time: T = 1, so the head scores that step under either readout.
    let step_config = ModelConfig {
        readout: Readout::Last,
        ..*config
    };
    // Every layer's state, [L, H] for a batch of one.
    let states = (config.layers, config.hidden_size);
    let mut h = Array2::<f32>::zeros(states);
    let mut c = (config.cell == Cell::Lstm).then(|| Array2::<f32>::zeros(states));
    let mut logits = Vec::new();
    let step = |class: u32, h: &mut Array2<f32>, c: &mut Option<Array2<f32>>| {
        let mut x = Array3::<f32>::zeros((1, 1, classes));
        x[[0, 0, class as usize]] = 1.0;
        let batch = Batch {
            x,
            h0: Some(h.clone()),
            c0: c.clone(),
            targets: Targets::Classes(vec![0]),
            lengths: None,
        };
        let fwd = cpu::forward(&step_config, params, &batch)?;
        (*h, *c) = fwd.final_states();
        Ok::<Vec<f32>, Error>(fwd.outputs.row(0).to_vec())
    };
    for class in vocabulary.encode(prime)? {
        logits = step(class, &mut h, &mut c)?;
    }
    let mut drawn = Vec::with_capacity(length);
    for _ in 0..length {
        let class = draw(&logits, temperature, rng);
        drawn.push(class);
        logits = step(class, &mut h, &mut c)?;
    }
    vocabulary.decode(&drawn)
}

/// A class from `softmax(logits / temperature)`.
fn draw(logits: &[f32], temperature: f32, rng: &mut impl Rng) -> u32 {
    let largest = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = logits
        .iter()
        .map(|&l| (((l - largest) / temperature) as f64).exp())
        .collect();
    let mut target = rng.random::<f64>() * weights.iter().sum::<f64>();
    for (class, w) in weights.iter().enumerate() {
        if target < *w {
            return class as u32;
        }
        target -= w;
    }
    (weights.len() - 1) as u32
}
