//! The activation and gradient buffers of one (seq_len, batch) shape, reused across runs of
//! the same shape. Every activation of every step stays on the GPU for BPTT.

use super::context::Gpu;
use super::model::ParamBuffers;
use crate::config::{Cell, ModelConfig};
use crate::data::{Batch, Targets};
use crate::Error;
use ndarray::Array2;

pub(crate) struct Workspace {
    pub seq_len: usize,
    pub batch: usize,
    /// [T, B, I]
    pub x: wgpu::Buffer,
    /// [T+1, B, H], h_0 at step 0
    pub hs: wgpu::Buffer,
    /// [T+1, B, H], c_0 at step 0 (LSTM only)
    pub cs: wgpu::Buffer,
    /// [T, B, G*H] pre-activations, then activated gates
    pub gates: wgpu::Buffer,
    /// [rows, O]
    pub outputs: wgpu::Buffer,
    /// [rows, O] f32 values or [rows] u32 classes
    pub targets: wgpu::Buffer,
    /// [rows] each row's share of the mean loss
    pub row_loss: wgpu::Buffer,
    /// [1]
    pub loss: wgpu::Buffer,
    /// [rows, O]
    pub doutputs: wgpu::Buffer,
    /// [T, B, H] total dE/dh_t
    pub dh: wgpu::Buffer,
    /// [T, B, H] total dE/dc_t (LSTM only)
    pub dc: wgpu::Buffer,
    /// [B, H] dE/dc along the cell path; dE/dc_0 after the backward loop (LSTM only)
    pub dc_carry: wgpu::Buffer,
    /// [T, B, G*H]
    pub dgates: wgpu::Buffer,
    pub grads: ParamBuffers,
    /// [T, B, I]
    pub dx: wgpu::Buffer,
    /// [B, H]
    pub dh0: wgpu::Buffer,
    /// [T] ||dE/dh_t||, then [T] ||dE/dc_t|| for the LSTM
    pub norms: wgpu::Buffer,
}

impl Workspace {
    pub fn new(
        gpu: &Gpu,
        config: &ModelConfig,
        seq_len: usize,
        batch: usize,
    ) -> Result<Self, Error> {
        let (t, b, h, i, o) = (
            seq_len,
            batch,
            config.hidden_size,
            config.input_size,
            config.output_size,
        );
        let gh = config.gate_rows();
        let rows = config.scored_rows(t, b);
        let lstm = config.cell == Cell::Lstm;
        let cell_words = |words: usize| if lstm { words } else { 0 };
        let buffer = |what: &str, words: usize| gpu.storage_buffer(what, words);
        Ok(Workspace {
            seq_len,
            batch,
            x: buffer("the inputs x [T, B, I]", t * b * i)?,
            hs: buffer("the hidden states [T+1, B, H]", (t + 1) * b * h)?,
            cs: buffer("the cell states [T+1, B, H]", cell_words((t + 1) * b * h))?,
            gates: buffer("the gate activations [T, B, G*H]", t * b * gh)?,
            outputs: buffer("the head outputs [rows, O]", rows * o)?,
            targets: buffer("the targets [rows, O]", rows * o)?,
            row_loss: buffer("the per-row losses [rows]", rows)?,
            loss: buffer("the loss", 1)?,
            doutputs: buffer("the output gradients [rows, O]", rows * o)?,
            dh: buffer("the hidden-state gradients [T, B, H]", t * b * h)?,
            dc: buffer("the cell-state gradients [T, B, H]", cell_words(t * b * h))?,
            dc_carry: buffer("the cell-path gradient [B, H]", cell_words(b * h))?,
            dgates: buffer("the gate gradients [T, B, G*H]", t * b * gh)?,
            grads: ParamBuffers::new(gpu, config, "gradient of")?,
            dx: buffer("the input gradients [T, B, I]", t * b * i)?,
            dh0: buffer("the initial-state gradient [B, H]", b * h)?,
            norms: buffer("the per-step gradient norms [2, T]", 2 * t)?,
        })
    }

    pub fn fits(&self, seq_len: usize, batch: usize) -> bool {
        self.seq_len == seq_len && self.batch == batch
    }

    /// Writes a batch's tensors (the writes land before the next submission). A missing
    /// initial state is written as zeros, since the buffers are reused.
    pub fn upload(&self, gpu: &Gpu, config: &ModelConfig, batch: &Batch<f32>) {
        let queue = &gpu.queue;
        let x = batch.x.as_standard_layout();
        queue.write_buffer(&self.x, 0, bytemuck::cast_slice(x.as_slice().unwrap()));
        let zeros = Array2::<f32>::zeros((self.batch, config.hidden_size));
        let h0 = batch.h0.as_ref().unwrap_or(&zeros).as_standard_layout();
        queue.write_buffer(&self.hs, 0, bytemuck::cast_slice(h0.as_slice().unwrap()));
        if config.cell == Cell::Lstm {
            let c0 = batch.c0.as_ref().unwrap_or(&zeros).as_standard_layout();
            queue.write_buffer(&self.cs, 0, bytemuck::cast_slice(c0.as_slice().unwrap()));
        }
        match &batch.targets {
            Targets::Values(y) => {
                let y = y.as_standard_layout();
                queue.write_buffer(
                    &self.targets,
                    0,
                    bytemuck::cast_slice(y.as_slice().unwrap()),
                )
            }
            Targets::Classes(c) => queue.write_buffer(&self.targets, 0, bytemuck::cast_slice(c)),
        }
    }
}
