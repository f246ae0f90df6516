//! Parameters with PyTorch's names and shapes, so weights move between frameworks unchanged.
//! Gradients have exactly the parameters' shapes, so they are a `Params` too.

use crate::config::ModelConfig;
use crate::error::Error;
use crate::float::Float;
use ndarray::{Array1, Array2, ArrayViewD, ArrayViewMutD};
use rand::Rng;

/// One recurrent cell: a layer's forward or reverse direction. `G*H` rows stack the gates
/// (i, f, g, o for the LSTM; r, z, n for the GRU).
/// Shapes: weight_ih `[G*H, W]` with W the layer's input width (I for layer 0, D*H above),
/// weight_hh `[G*H, H]`, bias_ih `[G*H]`, bias_hh `[G*H]`.
#[derive(Clone, Debug, PartialEq)]
pub struct CellParams<F> {
    /// The input-to-hidden weights `W_ih`, `[G*H, W]` (PyTorch's `weight_ih_l{k}`).
    pub weight_ih: Array2<F>,
    /// The hidden-to-hidden weights `W_hh`, `[G*H, H]`, whose spectrum decides whether
    /// gradients vanish or explode through time.
    pub weight_hh: Array2<F>,
    /// The input bias `b_ih`, `[G*H]`.
    pub bias_ih: Array1<F>,
    /// The recurrent bias `b_hh`, `[G*H]` (the GRU adds it inside the reset gate's product;
    /// the other cells simply add it to `b_ih`).
    pub bias_hh: Array1<F>,
}

/// Every weight and bias of a model (or every gradient of them: the shapes are the same).
///
/// cells `[L*D]`, indexed `layer * D + direction` (`ModelConfig::cells`);
/// head_weight `[O, D*H]`, head_bias `[O]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Params<F> {
    /// The recurrent cells, `L*D` of them, layer by layer, the forward direction first.
    pub cells: Vec<CellParams<F>>,
    /// The linear head's weight, `[O, D*H]` (PyTorch's `nn.Linear.weight`, saved as
    /// `head.weight`).
    pub head_weight: Array2<F>,
    /// The linear head's bias, `[O]` (saved as `head.bias`).
    pub head_bias: Array1<F>,
}

/// The four tensors of a cell, in the order PyTorch's `state_dict` lists them.
const CELL_TENSORS: [&str; 4] = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"];

/// The head's tensors, after every cell's.
pub(crate) const HEAD_NAMES: [&str; 2] = ["head.weight", "head.bias"];

/// PyTorch's name of a cell tensor: `weight_ih_l1_reverse` for layer 1's reverse direction.
pub(crate) fn cell_tensor_name(tensor: &str, layer: usize, reverse: bool) -> String {
    let suffix = if reverse { "_reverse" } else { "" };
    format!("{tensor}_l{layer}{suffix}")
}

/// Every parameter's name, in the order `Params::tensors` lists them: for each layer, for each
/// direction, weight_ih, weight_hh, bias_ih, bias_hh (as `nn.LSTM.state_dict()`), then the
/// head's.
pub fn param_names(config: &ModelConfig) -> Vec<String> {
    let d = config.directions();
    (0..config.cells())
        .flat_map(|k| CELL_TENSORS.map(|t| cell_tensor_name(t, k / d, k % d == 1)))
        .chain(HEAD_NAMES.map(String::from))
        .collect()
}

/// Every parameter's name with its shape, in `param_names` order.
pub(crate) fn param_shapes(config: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (gh, h) = (config.gate_rows(), config.hidden_size);
    let d = config.directions();
    let mut shapes: Vec<Vec<usize>> = (0..config.cells())
        .flat_map(|k| {
            let width = config.layer_input_size(k / d);
            [vec![gh, width], vec![gh, h], vec![gh], vec![gh]]
        })
        .collect();
    shapes.push(vec![config.output_size, config.head_input_size()]);
    shapes.push(vec![config.output_size]);
    param_names(config).into_iter().zip(shapes).collect()
}

impl<F: Float> CellParams<F> {
    fn zeros(gate_rows: usize, input: usize, hidden: usize) -> Self {
        CellParams {
            weight_ih: Array2::zeros((gate_rows, input)),
            weight_hh: Array2::zeros((gate_rows, hidden)),
            bias_ih: Array1::zeros(gate_rows),
            bias_hh: Array1::zeros(gate_rows),
        }
    }
}

fn contiguous<F>(a: Option<&[F]>) -> &[F] {
    a.expect("parameters are contiguous")
}

fn contiguous_mut<F>(a: Option<&mut [F]>) -> &mut [F] {
    a.expect("parameters are contiguous")
}

impl<F: Float> Params<F> {
    /// Every tensor of `config`'s shapes, filled with zeros (a gradient accumulator).
    pub fn zeros(config: &ModelConfig) -> Self {
        let (gh, h, o) = (config.gate_rows(), config.hidden_size, config.output_size);
        let d = config.directions();
        Params {
            cells: (0..config.cells())
                .map(|k| CellParams::zeros(gh, config.layer_input_size(k / d), h))
                .collect(),
            head_weight: Array2::zeros((o, config.head_input_size())),
            head_bias: Array1::zeros(o),
        }
    }

    /// PyTorch's default: every recurrent parameter uniform in ±1/sqrt(H); the head as
    /// `nn.Linear(D*H, O)` does it, uniform in ±1/sqrt(D*H).
    pub fn init_uniform(config: &ModelConfig, rng: &mut impl Rng) -> Self {
        let recurrent = 1.0 / (config.hidden_size as f64).sqrt();
        let head = 1.0 / (config.head_input_size() as f64).sqrt();
        let mut params = Self::zeros(config);
        params.for_each_mut(|name, values| {
            let bound = if name.starts_with("head.") {
                head
            } else {
                recurrent
            };
            for v in values.iter_mut() {
                *v = F::from_f64(rng.random_range(-bound..bound)).unwrap();
            }
        });
        params
    }

    /// The cell of `layer` and direction `direction` (1: reverse) in a model of `directions`.
    pub fn cell(&self, layer: usize, direction: usize, directions: usize) -> &CellParams<F> {
        &self.cells[layer * directions + direction]
    }

    /// Directions per layer, from the head's width: D*H columns over H hidden units.
    fn directions(&self) -> usize {
        self.head_weight.ncols() / self.cells[0].weight_hh.ncols().max(1)
    }

    /// Every tensor with its PyTorch name, in `param_names` order: the one place that order is
    /// spelled out for a `Params`.
    fn named(&self) -> Vec<(String, ArrayViewD<'_, F>)> {
        let d = self.directions().max(1);
        let mut all = Vec::with_capacity(4 * self.cells.len() + 2);
        for (k, cell) in self.cells.iter().enumerate() {
            let name = |t| cell_tensor_name(t, k / d, k % d == 1);
            all.push((name("weight_ih"), cell.weight_ih.view().into_dyn()));
            all.push((name("weight_hh"), cell.weight_hh.view().into_dyn()));
            all.push((name("bias_ih"), cell.bias_ih.view().into_dyn()));
            all.push((name("bias_hh"), cell.bias_hh.view().into_dyn()));
        }
        all.push((HEAD_NAMES[0].into(), self.head_weight.view().into_dyn()));
        all.push((HEAD_NAMES[1].into(), self.head_bias.view().into_dyn()));
        all
    }

    /// `named`, mutably.
    fn named_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, F>)> {
        let d = self.directions().max(1);
        let mut all = Vec::with_capacity(4 * self.cells.len() + 2);
        for (k, cell) in self.cells.iter_mut().enumerate() {
            let name = |t| cell_tensor_name(t, k / d, k % d == 1);
            all.push((name("weight_ih"), cell.weight_ih.view_mut().into_dyn()));
            all.push((name("weight_hh"), cell.weight_hh.view_mut().into_dyn()));
            all.push((name("bias_ih"), cell.bias_ih.view_mut().into_dyn()));
            all.push((name("bias_hh"), cell.bias_hh.view_mut().into_dyn()));
        }
        all.push((HEAD_NAMES[0].into(), self.head_weight.view_mut().into_dyn()));
        all.push((HEAD_NAMES[1].into(), self.head_bias.view_mut().into_dyn()));
        all
    }

    /// Every tensor with its PyTorch name, flattened row-major, in `param_names` order.
    pub fn tensors(&self) -> Vec<(String, &[F])> {
        self.named()
            .into_iter()
            .map(|(name, a)| (name, contiguous(a.to_slice())))
            .collect()
    }

    /// `tensors`, as mutable slices.
    pub fn tensors_mut(&mut self) -> Vec<(String, &mut [F])> {
        self.named_mut()
            .into_iter()
            .map(|(name, a)| (name, contiguous_mut(a.into_slice())))
            .collect()
    }

    /// Visits every tensor as a mutable flat slice, in `param_names` order.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&str, &mut [F])) {
        for (name, values) in self.tensors_mut() {
            f(&name, values);
        }
    }

    /// Converts element type (f64 reference <-> f32 GPU).
    pub fn cast<G: Float>(&self) -> Params<G> {
        let c1 = |a: &Array1<F>| a.mapv(|v| G::from_f64(v.to_f64().unwrap()).unwrap());
        let c2 = |a: &Array2<F>| a.mapv(|v| G::from_f64(v.to_f64().unwrap()).unwrap());
        Params {
            cells: self
                .cells
                .iter()
                .map(|c| CellParams {
                    weight_ih: c2(&c.weight_ih),
                    weight_hh: c2(&c.weight_hh),
                    bias_ih: c1(&c.bias_ih),
                    bias_hh: c1(&c.bias_hh),
                })
                .collect(),
            head_weight: c2(&self.head_weight),
            head_bias: c1(&self.head_bias),
        }
    }

    /// Checks every shape against `config`, naming the first tensor that disagrees.
    pub fn check(&self, config: &ModelConfig) -> Result<(), Error> {
        if self.cells.len() != config.cells() {
            return Err(Error::Config(format!(
                "the parameters hold {} recurrent cells; {} layer(s) x {} direction(s) need {}",
                self.cells.len(),
                config.layers,
                config.directions(),
                config.cells()
            )));
        }
        let shapes = param_shapes(config);
        for ((name, got), (_, expected)) in self.shapes().iter().zip(&shapes) {
            check_shape(name, got, expected)?;
        }
        Ok(())
    }

    /// Every tensor's name and shape, in `param_names` order.
    pub fn shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.named()
            .into_iter()
            .map(|(name, a)| (name, a.shape().to_vec()))
            .collect()
    }
}

pub(crate) fn check_shape(what: &str, got: &[usize], expected: &[usize]) -> Result<(), Error> {
    if got == expected {
        Ok(())
    } else {
        Err(Error::Shape {
            what: what.to_string(),
            got: got.to_vec(),
            expected: expected.to_vec(),
        })
    }
}
