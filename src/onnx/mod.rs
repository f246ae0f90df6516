//! ONNX export: a trained model as a standard ONNX graph of ONNX's own RNN, LSTM and GRU
//! operators (one per layer, `direction = bidirectional` where the model is), the head as
//! Gemm, runnable in any inference runtime (onnxruntime, TensorRT, OpenVINO, browsers).
//!
//! The graph, for x `[T, B, I]` (T and B dynamic) and optional sequence_lens `[B]` (int32):
//!
//! ```text
//!   layer l:  Y_l, Y_h_l = LSTM|GRU|RNN(input_l, W_l, R_l, B_l, sequence_lens)
//!             input_{l+1} = Reshape(Transpose(Y_l, [0, 2, 1, 3]), [0, 0, -1])  [T, B, D*H]
//!   last:     features = Reshape(Transpose(Y_h, [1, 0, 2]), [-1, D*H])        [B, D*H]
//!   all:      features = Reshape(Transpose(Y, [0, 2, 1, 3]), [-1, D*H])      [T*B, D*H]
//!   y = Gemm(features, head.weight, head.bias, transB = 1); probabilities = Softmax(y)
//!       (cross-entropy models)
//! ```
//!
//! Y_h is each direction's final state, the reverse one's after reading step 0: the crate's
//! last-step readout. Under `Readout::All` with sequence_lens, rows past a sequence's length
//! are padding, as in training: ONNX's Y is 0 there, so y is the head's bias.

pub mod proto;

use crate::config::{Activation, Cell, Loss, ModelConfig, Readout};
use crate::error::Error;
use crate::params::{CellParams, Params};
use ndarray::{Array1, Array2};
use proto::*;

/// Opsets the exporter writes: 14 gave RNN, LSTM and GRU their present form (`layout`) and
/// Reshape `allowzero`; 21 is the newest whose operators it uses unchanged.
pub const OPSETS: std::ops::RangeInclusive<i64> = 14..=21;
/// The opset written unless `--opset` (`ExportOptions::opset`) says otherwise.
pub const DEFAULT_OPSET: i64 = 17;

/// How to export.
#[derive(Clone, Copy, Debug)]
pub struct ExportOptions {
    /// The ONNX opset version the model declares, within [`OPSETS`].
    pub opset: i64,
    /// Adds the graph input sequence_lens `[B]` (int32): each sequence's length, as ONNX's
    /// recurrent operators take it.
    pub sequence_lens: bool,
    /// The head on the last step or on every step (the model's own by default).
    pub readout: Readout,
}

impl ExportOptions {
    /// The default opset, no `sequence_lens` input, and the model's own readout.
    pub fn for_model(config: &ModelConfig) -> Self {
        ExportOptions {
            opset: DEFAULT_OPSET,
            sequence_lens: false,
            readout: config.readout,
        }
    }
}

/// `config` and `params` as an ONNX model. Refuses an opset outside `OPSETS`.
pub fn export(
    config: &ModelConfig,
    params: &Params<f32>,
    options: ExportOptions,
) -> Result<ModelProto, Error> {
    if !OPSETS.contains(&options.opset) {
        return Err(Error::Config(format!(
            "--opset {}: the export writes opsets {} to {} (RNN, LSTM and GRU took their \
             present form in 14)",
            options.opset,
            OPSETS.start(),
            OPSETS.end()
        )));
    }
    config.validate()?;
    let mut graph = Graph::default();
    let lens = if options.sequence_lens {
        "sequence_lens"
    } else {
        ""
    };
    let mut input = "x".to_string();
    let mut last = (String::new(), String::new());
    for layer in 0..config.layers {
        last = graph.recurrent_layer(config, params, layer, &input, lens);
        if layer + 1 < config.layers {
            input = graph.time_major(&last.0, &format!("input_l{}", layer + 1), &[0, 0, -1]);
        }
    }
    let width = (config.directions() * config.hidden_size) as i64;
    let features = match options.readout {
        Readout::Last => graph.final_states(&last.1, width),
        Readout::All => graph.time_major(&last.0, "features", &[-1, width]),
    };
    graph.head(params, &features);
    let probabilities = config.loss == Loss::CrossEntropy;
    if probabilities {
        let axis = attr_int("axis", -1);
        graph.node("Softmax", &["y"], &["probabilities"], vec![axis]);
    }
    Ok(model(config, options, graph, probabilities))
}

/// `export`, written to `writer` (a file, a socket, a buffer).
pub fn export_to(
    config: &ModelConfig,
    params: &Params<f32>,
    options: ExportOptions,
    writer: &mut impl std::io::Write,
) -> Result<(), Error> {
    let bytes = export_bytes(config, params, options)?;
    writer
        .write_all(&bytes)
        .map_err(|e| Error::Io(format!("writing the ONNX model: {e}")))
}

/// The model bytes of `export`.
pub fn export_bytes(
    config: &ModelConfig,
    params: &Params<f32>,
    options: ExportOptions,
) -> Result<Vec<u8>, Error> {
    use prost::Message;
    Ok(export(config, params, options)?.encode_to_vec())
}

/// IR version of the opset's ONNX release (runtimes refuse an IR newer than they know).
fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=18 => 8,
        19 | 20 => 9,
        _ => 10,
    }
}

fn model(
    config: &ModelConfig,
    options: ExportOptions,
    graph: Graph,
    probabilities: bool,
) -> ModelProto {
    let rows = match options.readout {
        Readout::Last => "B",
        Readout::All => "TxB",
    };
    let outputs = (config.output_size) as i64;
    let mut output = vec![value_info(
        "y",
        FLOAT,
        &[Dim::Named(rows), Dim::Fixed(outputs)],
    )];
    if probabilities {
        output.push(value_info(
            "probabilities",
            FLOAT,
            &[Dim::Named(rows), Dim::Fixed(outputs)],
        ));
    }
    let x = [
        Dim::Named("T"),
        Dim::Named("B"),
        Dim::Fixed(config.input_size as i64),
    ];
    let mut input = vec![value_info("x", FLOAT, &x)];
    if options.sequence_lens {
        input.push(value_info(
            "sequence_lens",
            data_type::INT32,
            &[Dim::Named("B")],
        ));
    }
    let metadata = [
        ("cell", config.cell.to_string()),
        ("activation", config.activation.to_string()),
        ("layers", config.layers.to_string()),
        ("bidirectional", config.bidirectional.to_string()),
        ("hidden_size", config.hidden_size.to_string()),
        ("readout", options.readout.to_string()),
        ("loss", config.loss.to_string()),
    ];
    ModelProto {
        ir_version: Some(ir_version(options.opset)),
        producer_name: Some("rnn-wgpu".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(format!(
            "{} x {} layers, hidden {}, PyTorch's equations (gates reordered for ONNX)",
            config.cell, config.layers, config.hidden_size
        )),
        graph: Some(GraphProto {
            node: graph.nodes,
            name: Some("rnn_wgpu".into()),
            initializer: graph.initializers,
            doc_string: None,
            input,
            output,
        }),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(options.opset),
        }],
        metadata_props: (metadata.into_iter())
            .map(|(k, v)| StringStringEntryProto {
                key: Some(format!("rnn_wgpu.{k}")),
                value: Some(v),
            })
            .collect(),
    }
}

const FLOAT: i32 = data_type::FLOAT;

enum Dim<'a> {
    Fixed(i64),
    Named(&'a str),
}

fn value_info(name: &str, elem_type: i32, dims: &[Dim]) -> ValueInfoProto {
    let dim = (dims.iter())
        .map(|d| match d {
            Dim::Fixed(v) => Dimension {
                dim_value: Some(*v),
                dim_param: None,
            },
            Dim::Named(p) => Dimension {
                dim_value: None,
                dim_param: Some(p.to_string()),
            },
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: Some(elem_type),
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
        doc_string: None,
    }
}

fn attribute(name: &str, kind: i32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(kind),
        ..AttributeProto::default()
    }
}

fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        i: Some(value),
        ..attribute(name, attribute_type::INT)
    }
}

fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        ints: values.to_vec(),
        ..attribute(name, attribute_type::INTS)
    }
}

fn attr_string(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        s: Some(value.as_bytes().to_vec()),
        ..attribute(name, attribute_type::STRING)
    }
}

fn attr_strings(name: &str, values: &[&str]) -> AttributeProto {
    AttributeProto {
        strings: values.iter().map(|v| v.as_bytes().to_vec()).collect(),
        ..attribute(name, attribute_type::STRINGS)
    }
}

/// The nodes and initializers as they are added.
#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl Graph {
    fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: Some(format!("{}_{}", outputs[0], op.to_lowercase())),
            op_type: Some(op.into()),
            attribute,
            domain: None,
        });
    }

    fn floats(&mut self, name: &str, dims: &[usize], values: Vec<f32>) {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(FLOAT),
            name: Some(name.into()),
            raw_data: Some(raw),
            ..TensorProto::default()
        });
    }

    fn int64s(&mut self, name: &str, values: &[i64]) {
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: Some(data_type::INT64),
            name: Some(name.into()),
            int64_data: values.to_vec(),
            ..TensorProto::default()
        });
    }

    /// One layer's operator on `input`; returns the names of its Y and Y_h.
    fn recurrent_layer(
        &mut self,
        config: &ModelConfig,
        params: &Params<f32>,
        layer: usize,
        input: &str,
        lens: &str,
    ) -> (String, String) {
        let d = config.directions();
        let cells = &params.cells[layer * d..(layer + 1) * d];
        let weights = onnx_weights(config.cell, cells);
        let (g, h) = (config.cell.gates(), config.hidden_size);
        let i = cells[0].weight_ih.ncols();
        let [w, r, b] = [0, 1, 2].map(|k| format!("{}_l{layer}", ["W", "R", "B"][k]));
        self.floats(&w, &[d, g * h, i], weights.w);
        self.floats(&r, &[d, g * h, h], weights.r);
        self.floats(&b, &[d, 2 * g * h], weights.b);
        let (y, y_h) = (format!("Y_l{layer}"), format!("Y_h_l{layer}"));
        let direction = if config.bidirectional {
            "bidirectional"
        } else {
            "forward"
        };
        let mut attributes = vec![
            attr_int("hidden_size", h as i64),
            attr_string("direction", direction),
        ];
        match config.cell {
            Cell::Rnn => {
                let activation = onnx_activation(config.activation);
                attributes.push(attr_strings("activations", &vec![activation; d]));
            }
            Cell::Gru => attributes.push(attr_int("linear_before_reset", 1)),
            Cell::Lstm => {}
        }
        let op = match config.cell {
            Cell::Rnn => "RNN",
            Cell::Lstm => "LSTM",
            Cell::Gru => "GRU",
        };
        self.node(op, &[input, &w, &r, &b, lens], &[&y, &y_h], attributes);
        (y, y_h)
    }

    /// Y [T, D, B, H] as [T, B, D*H] rows ordered t, b: `shape` [0, 0, -1] keeps T and B,
    /// [-1, D*H] merges them into the head's rows.
    fn time_major(&mut self, y: &str, out: &str, shape: &[i64]) -> String {
        let moved = format!("{out}_tbdh");
        self.node(
            "Transpose",
            &[y],
            &[&moved],
            vec![attr_ints("perm", &[0, 2, 1, 3])],
        );
        let shape_name = format!("{out}_shape");
        self.int64s(&shape_name, shape);
        self.node("Reshape", &[&moved, &shape_name], &[out], vec![]);
        out.to_string()
    }

    /// Y_h [D, B, H] as [B, D*H]: each sequence's directions side by side.
    fn final_states(&mut self, y_h: &str, width: i64) -> String {
        self.node(
            "Transpose",
            &[y_h],
            &["final_bdh"],
            vec![attr_ints("perm", &[1, 0, 2])],
        );
        self.int64s("final_shape", &[-1, width]);
        self.node(
            "Reshape",
            &["final_bdh", "final_shape"],
            &["features"],
            vec![],
        );
        "features".into()
    }

    /// y = features head.weight^T + head.bias.
    fn head(&mut self, params: &Params<f32>, features: &str) {
        let (o, k) = params.head_weight.dim();
        self.floats(
            "head.weight",
            &[o, k],
            params.head_weight.iter().copied().collect(),
        );
        self.floats("head.bias", &[o], params.head_bias.to_vec());
        let trans_b = attr_int("transB", 1);
        self.node(
            "Gemm",
            &[features, "head.weight", "head.bias"],
            &["y"],
            vec![trans_b],
        );
    }
}

fn onnx_activation(activation: Activation) -> &'static str {
    match activation {
        Activation::Tanh => "Tanh",
        Activation::Sigmoid => "Sigmoid",
        Activation::Relu => "Relu",
    }
}

/// ONNX's gate block k is PyTorch's block `order[k]`: LSTM i, o, f, c from i, f, g, o; GRU
/// z, r, h from r, z, n.
fn gate_order(cell: Cell) -> &'static [usize] {
    match cell {
        Cell::Rnn => &[0],
        Cell::Lstm => &[0, 3, 1, 2],
        Cell::Gru => &[1, 0, 2],
    }
}

/// `values` (G*H rows of `width` values: G gate blocks of `hidden` rows) with its blocks in
/// `order`.
fn reorder(values: &[f32], width: usize, hidden: usize, order: &[usize]) -> Vec<f32> {
    let block = hidden * width;
    order
        .iter()
        .flat_map(|&k| values[k * block..(k + 1) * block].iter().copied())
        .collect()
}

/// One layer's directions in ONNX's W [D, G*H, I], R [D, G*H, H], B [D, 2*G*H] (Wb then Rb).
struct OnnxWeights {
    w: Vec<f32>,
    r: Vec<f32>,
    b: Vec<f32>,
}

fn onnx_weights(cell: Cell, directions: &[CellParams<f32>]) -> OnnxWeights {
    let order = gate_order(cell);
    let h = directions[0].weight_hh.ncols();
    let mut out = OnnxWeights {
        w: Vec::new(),
        r: Vec::new(),
        b: Vec::new(),
    };
    for c in directions {
        let flat = |a: &Array2<f32>| a.iter().copied().collect::<Vec<f32>>();
        out.w
            .extend(reorder(&flat(&c.weight_ih), c.weight_ih.ncols(), h, order));
        out.r.extend(reorder(&flat(&c.weight_hh), h, h, order));
        out.b.extend(reorder(&c.bias_ih.to_vec(), 1, h, order));
        out.b.extend(reorder(&c.bias_hh.to_vec(), 1, h, order));
    }
    out
}

/// The inverse permutation of `order`.
fn inverse(order: &[usize]) -> Vec<usize> {
    let mut back = vec![0; order.len()];
    for (k, &from) in order.iter().enumerate() {
        back[from] = k;
    }
    back
}

/// The parameters back from an exported model's initializers: ONNX's layout and gate order
/// undone, for checking an export (and reading one back).
pub fn params_from_model(config: &ModelConfig, model: &ModelProto) -> Result<Params<f32>, Error> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| Error::Value("the model has no graph".into()))?;
    let tensor = |name: &str| -> Result<Vec<f32>, Error> {
        let t = (graph.initializer.iter())
            .find(|t| t.name.as_deref() == Some(name))
            .ok_or_else(|| Error::Value(format!("the model has no initializer {name}")))?;
        let raw = t.raw_data.as_deref().unwrap_or_default();
        Ok(raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    };
    let (g, h, d) = (config.cell.gates(), config.hidden_size, config.directions());
    let back = inverse(gate_order(config.cell));
    let mut cells = Vec::with_capacity(config.cells());
    for layer in 0..config.layers {
        let i = config.layer_input_size(layer);
        let [w, r, b] = ["W", "R", "B"].map(|n| tensor(&format!("{n}_l{layer}")));
        let (w, r, b) = (w?, r?, b?);
        for k in 0..d {
            let slice = |v: &[f32], len: usize| v[k * len..(k + 1) * len].to_vec();
            let wk = reorder(&slice(&w, g * h * i), i, h, &back);
            let rk = reorder(&slice(&r, g * h * h), h, h, &back);
            let bk = &b[k * 2 * g * h..(k + 1) * 2 * g * h];
            cells.push(CellParams {
                weight_ih: Array2::from_shape_vec((g * h, i), wk).expect("W's shape"),
                weight_hh: Array2::from_shape_vec((g * h, h), rk).expect("R's shape"),
                bias_ih: Array1::from(reorder(&bk[..g * h], 1, h, &back)),
                bias_hh: Array1::from(reorder(&bk[g * h..], 1, h, &back)),
            });
        }
    }
    let (o, width) = (config.output_size, d * h);
    Ok(Params {
        cells,
        head_weight: Array2::from_shape_vec((o, width), tensor("head.weight")?)
            .map_err(|e| Error::Value(format!("head.weight: {e}")))?,
        head_bias: Array1::from(tensor("head.bias")?),
    })
}
