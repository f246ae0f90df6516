//! The ONNX messages an exported model uses, as prost types: the subset of onnx.proto (ONNX's
//! schema; the field numbers are its, checked against onnx/onnx at f75469120) that a graph of
//! RNN, LSTM, GRU and a few tensor operators needs. prost's derive writes and reads the wire
//! format, so no protoc is needed to build the crate. Fields left out are ones this exporter
//! never sets; a decoder skips them in files from elsewhere.

/// ModelProto: the file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// The version of ONNX's IR (the file format) the model follows.
    #[prost(int64, optional, tag = "1")]
    pub ir_version: Option<i64>,
    /// The tool that wrote the model (`rnn-wgpu`).
    #[prost(string, optional, tag = "2")]
    pub producer_name: Option<String>,
    /// That tool's version.
    #[prost(string, optional, tag = "3")]
    pub producer_version: Option<String>,
    /// A human-readable description of the model.
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
    /// The computation: nodes, weights, inputs and outputs.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// The operator sets (domain and version) the graph's nodes are defined by.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// Free key-value pairs; the export writes the model's configuration under `rnn_wgpu.`.
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// One operator set a model imports: a domain and its version.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    /// "" is the default domain (ai.onnx).
    #[prost(string, optional, tag = "1")]
    pub domain: Option<String>,
    /// The opset version, e.g. 17.
    #[prost(int64, optional, tag = "2")]
    pub version: Option<i64>,
}

/// A key-value pair of strings (ONNX's stand-in for a map entry).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    /// The key.
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    /// The value.
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// A computation graph: nodes in topological order, with its constants, inputs and outputs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    /// The operators, each after the nodes whose outputs it reads.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// The graph's name.
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
    /// Constant tensors (the weights), referred to by name from nodes' inputs.
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// A human-readable description of the graph.
    #[prost(string, optional, tag = "10")]
    pub doc_string: Option<String>,
    /// The graph's inputs, with their element types and shapes.
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// The graph's outputs, with their element types and shapes.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

/// One operator application in a graph.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    /// The names of the values it reads, in the operator's input order; "" leaves an optional
    /// input out.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// The names of the values it writes, in the operator's output order.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// The node's name, for diagnostics.
    #[prost(string, optional, tag = "3")]
    pub name: Option<String>,
    /// The operator, e.g. `LSTM`, `Gemm`, `Transpose`.
    #[prost(string, optional, tag = "4")]
    pub op_type: Option<String>,
    /// The operator's attributes (`hidden_size`, `direction`, `perm`, ...).
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// The operator set the operator belongs to; "" is ai.onnx.
    #[prost(string, optional, tag = "7")]
    pub domain: Option<String>,
}

/// AttributeProto.AttributeType.
pub mod attribute_type {
    /// A 32-bit float in `f`.
    pub const FLOAT: i32 = 1;
    /// A 64-bit integer in `i`.
    pub const INT: i32 = 2;
    /// A byte string in `s`.
    pub const STRING: i32 = 3;
    /// Integers in `ints`.
    pub const INTS: i32 = 7;
    /// Byte strings in `strings`.
    pub const STRINGS: i32 = 8;
}

/// A named attribute of a node; `type` says which of the value fields holds it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    /// The attribute's name, e.g. `hidden_size`.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// A float value (`type` FLOAT).
    #[prost(float, optional, tag = "2")]
    pub f: Option<f32>,
    /// An integer value (`type` INT).
    #[prost(int64, optional, tag = "3")]
    pub i: Option<i64>,
    /// A string value as UTF-8 bytes (`type` STRING).
    #[prost(bytes = "vec", optional, tag = "4")]
    pub s: Option<Vec<u8>>,
    /// A list of integers (`type` INTS).
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    /// A list of strings as UTF-8 bytes (`type` STRINGS).
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
    /// Which value field is set: one of [`attribute_type`].
    #[prost(int32, optional, tag = "20")]
    pub r#type: Option<i32>,
}

/// TensorProto.DataType.
pub mod data_type {
    /// 32-bit IEEE float.
    pub const FLOAT: i32 = 1;
    /// 32-bit signed integer.
    pub const INT32: i32 = 6;
    /// 64-bit signed integer.
    pub const INT64: i32 = 7;
}

/// A constant tensor: shape, element type, name and values.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// The shape, outermost axis first.
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    /// The element type: one of [`data_type`].
    #[prost(int32, optional, tag = "2")]
    pub data_type: Option<i32>,
    /// FLOAT values, row-major, where `raw_data` is not used.
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// INT64 values, row-major, where `raw_data` is not used.
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    /// The name nodes refer to it by.
    #[prost(string, optional, tag = "8")]
    pub name: Option<String>,
    /// Little-endian values, the layout every runtime reads fastest.
    #[prost(bytes = "vec", optional, tag = "9")]
    pub raw_data: Option<Vec<u8>>,
}

/// A graph input's or output's name, type and shape.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    /// The value's name, as nodes refer to it.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Its element type and shape.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    /// A human-readable description of the value.
    #[prost(string, optional, tag = "3")]
    pub doc_string: Option<String>,
}

/// A value's type; this exporter writes only tensors.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    /// The `tensor_type` member of TypeProto's `value` oneof (field 1), the only one used.
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorTypeProto>,
}

/// TypeProto.Tensor.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorTypeProto {
    /// The element type: one of [`data_type`].
    #[prost(int32, optional, tag = "1")]
    pub elem_type: Option<i32>,
    /// The shape; a dimension may be a name for a size known only at run time.
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

/// A tensor's shape: one entry per axis.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// The axes' sizes, outermost first.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

/// TensorShapeProto.Dimension: a size, or a name for a size known only at run time.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dimension {
    /// A fixed size.
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    /// A symbolic size (`T`, `B`), the same wherever the name is used.
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}
