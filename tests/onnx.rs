//! ONNX export decoded back in Rust: for every cell (RNN with each activation, LSTM, GRU),
//! 1 and 2 layers, one and two directions and both heads, the operators and their attributes,
//! the initializers' shapes, the graph's inputs and outputs, and the weights converted back
//! bit for bit. Running the models in onnxruntime is `scripts/onnx_check.py` (CI runs it).

use prost::Message;

mod common;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rnn_wgpu::onnx::proto::{AttributeProto, Dimension, ModelProto, NodeProto, ValueInfoProto};
use rnn_wgpu::onnx::{export_bytes, export_to, params_from_model, ExportOptions};
use rnn_wgpu::{Activation, Cell, Error, Loss, ModelConfig, Params, Readout};

fn config(cell: Cell, activation: Activation, layers: usize, bidirectional: bool) -> ModelConfig {
    ModelConfig {
        cell,
        activation,
        input_size: 3,
        hidden_size: 5,
        output_size: 2,
        readout: Readout::Last,
        loss: Loss::CrossEntropy,
        layers,
        bidirectional,
        dropout: 0.0,
    }
}

fn attribute<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
}

/// A graph input's or output's dimensions.
fn shape(value: &ValueInfoProto) -> &[Dimension] {
    let tensor = value.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
    &tensor
        .and_then(|t| t.shape.as_ref())
        .expect("a tensor with a shape")
        .dim
}

fn bits(params: &Params<f32>) -> Vec<(String, Vec<u32>)> {
    (params.tensors().into_iter())
        .map(|(name, v)| (name, v.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

fn dims(model: &ModelProto, name: &str) -> Vec<i64> {
    let graph = model.graph.as_ref().unwrap();
    let tensor = graph
        .initializer
        .iter()
        .find(|t| t.name.as_deref() == Some(name));
    tensor
        .unwrap_or_else(|| panic!("no initializer {name}"))
        .dims
        .clone()
}

fn check(config: &ModelConfig, options: ExportOptions) {
    let label = format!("{config:?} {options:?}");
    let params = Params::<f32>::init_uniform(config, &mut StdRng::seed_from_u64(3));
    let bytes = export_bytes(config, &params, options).unwrap();
    let mut written = Vec::new();
    export_to(config, &params, options, &mut written).unwrap();
    assert!(written == bytes, "{label}: export_to wrote other bytes");
    let model = ModelProto::decode(bytes.as_slice()).unwrap();
    let opset = model.opset_import[0].version;
    assert_eq!(opset, Some(options.opset), "{label}");
    let graph = model.graph.as_ref().unwrap();
    let ops: Vec<&str> = graph
        .node
        .iter()
        .map(|n| n.op_type.as_deref().unwrap())
        .collect();
    let op = match config.cell {
        Cell::Rnn => "RNN",
        Cell::Lstm => "LSTM",
        Cell::Gru => "GRU",
    };
    let head = ["Transpose", "Reshape", "Gemm"];
    let mut expected = Vec::new();
    for layer in 0..config.layers {
        expected.push(op);
        if layer + 1 < config.layers {
            expected.extend(["Transpose", "Reshape"]);
        }
    }
    expected.extend(head);
    expected.push("Softmax");
    assert_eq!(ops, expected, "{label}");

    let (d, g, h) = (config.directions() as i64, config.cell.gates() as i64, 5);
    for (layer, node) in graph
        .node
        .iter()
        .filter(|n| n.op_type.as_deref() == Some(op))
        .enumerate()
    {
        let i = config.layer_input_size(layer) as i64;
        assert_eq!(
            dims(&model, &format!("W_l{layer}")),
            [d, g * h, i],
            "{label}"
        );
        assert_eq!(
            dims(&model, &format!("R_l{layer}")),
            [d, g * h, h],
            "{label}"
        );
        assert_eq!(
            dims(&model, &format!("B_l{layer}")),
            [d, 2 * g * h],
            "{label}"
        );
        assert_eq!(
            attribute(node, "hidden_size").unwrap().i,
            Some(h),
            "{label}"
        );
        let direction = attribute(node, "direction").unwrap().s.clone().unwrap();
        let want = if config.bidirectional {
            "bidirectional"
        } else {
            "forward"
        };
        assert_eq!(direction, want.as_bytes(), "{label}");
        let lens = node.input.get(4).map(String::as_str).unwrap_or_default();
        assert_eq!(
            lens,
            if options.sequence_lens {
                "sequence_lens"
            } else {
                ""
            },
            "{label}"
        );
        match config.cell {
            Cell::Gru => assert_eq!(attribute(node, "linear_before_reset").unwrap().i, Some(1)),
            Cell::Rnn => {
                let names = &attribute(node, "activations").unwrap().strings;
                let want = match config.activation {
                    Activation::Tanh => "Tanh",
                    Activation::Sigmoid => "Sigmoid",
                    Activation::Relu => "Relu",
                };
                assert_eq!(names.len() as i64, d, "{label}");
                assert!(names.iter().all(|n| n == want.as_bytes()), "{label}");
            }
            Cell::Lstm => assert!(attribute(node, "activations").is_none(), "{label}"),
        }
    }
    let names = |v: &[ValueInfoProto]| {
        v.iter()
            .map(|i| i.name.clone().unwrap())
            .collect::<Vec<_>>()
    };
    let mut inputs = vec!["x".to_string()];
    if options.sequence_lens {
        inputs.push("sequence_lens".into());
    }
    assert_eq!(names(&graph.input), inputs, "{label}");
    assert_eq!(names(&graph.output), ["y", "probabilities"], "{label}");
    // the head reads the final states [D, B, H] or every step's outputs [T, D, B, H]
    let to_head = &graph.node[graph.node.len() - 4];
    let (perm, rows) = match options.readout {
        Readout::Last => (vec![1, 0, 2], "B"),
        Readout::All => (vec![0, 2, 1, 3], "TxB"),
    };
    assert_eq!(attribute(to_head, "perm").unwrap().ints, perm, "{label}");
    let y_rows = &shape(&graph.output[0])[0];
    assert_eq!(y_rows.dim_param.as_deref(), Some(rows), "{label}");
    let dim = shape(&graph.input[0]);
    assert_eq!(
        dim[0].dim_param.as_deref(),
        Some("T"),
        "{label}: T is dynamic"
    );
    assert_eq!(
        dim[1].dim_param.as_deref(),
        Some("B"),
        "{label}: B is dynamic"
    );
    assert_eq!(dim[2].dim_value, Some(3), "{label}");

    let back = params_from_model(config, &model).unwrap();
    assert!(
        bits(&back) == bits(&params),
        "{label}: the weights do not convert back"
    );
}

#[test]
fn every_cell_stacked_and_bidirectional_exports_and_converts_back() {
    for (cell, activation) in common::EVERY_CELL {
        for layers in [1, 2] {
            for bidirectional in [false, true] {
                let config = config(cell, activation, layers, bidirectional);
                for readout in [Readout::Last, Readout::All] {
                    for (sequence_lens, opset) in [(false, 17), (true, 14), (false, 21)] {
                        let options = ExportOptions {
                            opset,
                            sequence_lens,
                            readout,
                        };
                        check(&config, options);
                    }
                }
            }
        }
    }
}

#[test]
fn opsets_outside_the_range_are_refused() {
    let config = config(Cell::Lstm, Activation::Tanh, 1, false);
    let params = Params::<f32>::zeros(&config);
    for opset in [13, 22] {
        let options = ExportOptions {
            opset,
            ..ExportOptions::for_model(&config)
        };
        let err = export_bytes(&config, &params, options).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
        assert!(
            err.to_string().contains(&format!("--opset {opset}")),
            "{err}"
        );
    }
}
