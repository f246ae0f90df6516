//! Where a non-finite loss or gradient comes from. Both engines report a NaN or an infinity
//! in the loss and the gradient norms (the GPU's kernels check the bits explicitly, see
//! shaders/finite.wgsl); `locate` then names its first source: a parameter, the batch, or the
//! first time step whose state is non-finite in the CPU engine's forward pass, which defines
//! the same mathematics as the GPU's.

// Defined in `error`, beside the error that carries it; named here, where `locate` finds it.
pub use crate::error::NonFinite;

use crate::config::ModelConfig;
use crate::cpu::{self, stack::reversed_step};
use crate::data::{Batch, Targets};
use crate::error::Error;
use crate::params::Params;
use ndarray::{ArrayView3, Axis, Dimension};

/// The first NaN or infinity among `params`, the batch and the states of the CPU engine's
/// forward pass over it (without dropout); `None` when the forward pass and its loss are
/// finite throughout.
pub fn locate(
    config: &ModelConfig,
    params: &Params<f32>,
    batch: &Batch<f32>,
) -> Result<Option<NonFinite>, Error> {
    if let Some(found) = in_params(params).or_else(|| in_batch(batch)) {
        return Ok(Some(found));
    }
    let forward = cpu::forward(config, params, batch)?;
    let directions = config.directions();
    for (k, run) in forward.cells.iter().enumerate() {
        let states = std::iter::once((false, &run.hs)).chain(run.cs.iter().map(|c| (true, c)));
        let first = states
            .filter_map(|(cell_state, s)| first_step(s.view()).map(|at| (at, cell_state)))
            .min_by_key(|(at, _)| at.0);
        if let Some(((pass_step, sequence), cell_state)) = first {
            let reverse = k % directions == 1;
            let lengths = batch.lengths.as_deref();
            let natural = match reverse {
                true => reversed_step(lengths, batch.seq_len(), sequence, pass_step - 1) + 1,
                false => pass_step,
            };
            return Ok(Some(NonFinite::State {
                layer: k / directions,
                reverse,
                cell_state,
                step: natural,
                steps: batch.seq_len(),
                sequence,
            }));
        }
    }
    let outputs_finite = forward.outputs.iter().all(|v| v.is_finite());
    Ok((!(outputs_finite && forward.loss.is_finite())).then_some(NonFinite::Outputs))
}

fn in_params(params: &Params<f32>) -> Option<NonFinite> {
    params.tensors().into_iter().find_map(|(tensor, values)| {
        let index = values.iter().position(|v| !v.is_finite())?;
        Some(NonFinite::Parameter {
            tensor,
            index,
            value: values[index],
        })
    })
}

fn in_batch(batch: &Batch<f32>) -> Option<NonFinite> {
    let first = |tensor: &'static str, values: ndarray::ArrayViewD<f32>| {
        let (index, value) = values.indexed_iter().find(|(_, v)| !v.is_finite())?;
        Some(NonFinite::Input {
            tensor,
            index: index.slice().to_vec(),
            value: *value,
        })
    };
    let targets = match &batch.targets {
        Targets::Values(values) => Some(values.view().into_dyn()),
        Targets::Classes(_) => None,
    };
    first("x", batch.x.view().into_dyn())
        .or_else(|| first("h0", batch.h0.as_ref()?.view().into_dyn()))
        .or_else(|| first("c0", batch.c0.as_ref()?.view().into_dyn()))
        .or_else(|| first("targets", targets?))
}

/// states [T+1, B, H] (index 0 the initial state, already checked): the first pass step
/// (1-based) holding a non-finite value, and the sequence it is in.
fn first_step(states: ArrayView3<f32>) -> Option<(usize, usize)> {
    states
        .axis_iter(Axis(0))
        .enumerate()
        .skip(1)
        .find_map(|(t, step)| {
            let row = step
                .axis_iter(Axis(0))
                .position(|row| row.iter().any(|v| !v.is_finite()))?;
            Some((t, row))
        })
}
