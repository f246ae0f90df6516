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
    Sampler::primed(config, params, vocabulary, prime, temperature, rng)?
        .take(length)
        .collect()
}

/// Draws bytes one at a time, each fed back as the next input, for as long as it is asked:
/// `sample` streams them to the terminal as they come.
pub struct Sampler<'a, R: Rng> {
    /// The model at T = 1, so the head scores that step under either readout.
    config: ModelConfig,
    params: &'a Params<f32>,
    vocabulary: &'a Vocabulary,
    temperature: f32,
    rng: &'a mut R,
    /// Every layer's state, [L, H] for a batch of one.
    h: Array2<f32>,
    c: Option<Array2<f32>>,
    /// The last step's logits, which the next byte is drawn from.
    logits: Vec<f32>,
}

impl<'a, R: Rng> Sampler<'a, R> {
    /// Checks the model and options, then feeds `prime` through the model.
    pub fn primed(
        config: &ModelConfig,
        params: &'a Params<f32>,
        vocabulary: &'a Vocabulary,
        prime: &[u8],
        temperature: f32,
        rng: &'a mut R,
    ) -> Result<Self, Error> {
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
                "a bidirectional model reads each sequence from its end too, so it cannot \
                 generate text one character at a time"
                    .into(),
            ));
        }
        let states = (config.layers, config.hidden_size);
        let mut sampler = Sampler {
            config: ModelConfig {
                readout: Readout::Last,
                ..*config
            },
            params,
            vocabulary,
            temperature,
            rng,
            h: Array2::zeros(states),
            c: (config.cell == Cell::Lstm).then(|| Array2::zeros(states)),
            logits: Vec::new(),
        };
        for class in vocabulary.encode(prime)? {
            sampler.step(class)?;
        }
        Ok(sampler)
    }

    /// Feeds `class` in: the state moves on a step and the logits are the head's on it.
    fn step(&mut self, class: u32) -> Result<(), Error> {
        let mut x = Array3::<f32>::zeros((1, 1, self.vocabulary.len()));
        x[[0, 0, class as usize]] = 1.0;
        let batch = Batch {
            x,
            h0: Some(self.h.clone()),
            c0: self.c.clone(),
            targets: Targets::Classes(vec![0]),
            lengths: None,
        };
        let fwd = cpu::forward(&self.config, self.params, &batch)?;
        (self.h, self.c) = fwd.final_states();
        self.logits = fwd.outputs.row(0).to_vec();
        Ok(())
    }
}

impl<R: Rng> Iterator for Sampler<'_, R> {
    type Item = Result<u8, Error>;

    /// The next byte, drawn from `softmax(logits / temperature)` and fed back.
    fn next(&mut self) -> Option<Self::Item> {
        let class = draw(&self.logits, self.temperature, self.rng);
        let byte = self.vocabulary.decode(&[class]).map(|bytes| bytes[0]);
        Some(self.step(class).and(byte))
    }
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
