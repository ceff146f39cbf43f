//! What an ONNX model's graph is made of, read from the file's protobuf encoding directly: the
//! operators of its main graph, to tell an 8-bit quantized generator from a float one.
//!
//! Only the fields on the path to the node types are decoded (`ModelProto.graph` = 7,
//! `GraphProto.node` = 1, `NodeProto.op_type` = 4); everything else, the weights included, is
//! skipped by its length.

/// Operators that only a quantized graph has: QDQ pairs around float operators, or the
/// integer operators ONNX Runtime's quantizer writes in the QOperator format.
const QUANTIZED_OPS: &[&str] = &[
    "QuantizeLinear",
    "DequantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "ConvInteger",
    "MatMulInteger",
];

/// Whether the graph of the ONNX model in `bytes` is quantized (has any of [`QUANTIZED_OPS`]).
pub fn is_quantized(bytes: &[u8]) -> Result<bool, String> {
    Ok(operators(bytes)?
        .iter()
        .any(|op| QUANTIZED_OPS.contains(&op.as_str())))
}

/// The operator type of every node of the model's main graph, in order.
pub fn operators(bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut ops = Vec::new();
    for (field, value) in Fields::new(bytes) {
        if let (7, Value::Bytes(graph)) = (field?, value) {
            for (field, value) in Fields::new(graph) {
                if let (1, Value::Bytes(node)) = (field?, value) {
                    for (field, value) in Fields::new(node) {
                        if let (4, Value::Bytes(op)) = (field?, value) {
                            ops.push(String::from_utf8_lossy(op).into_owned());
                        }
                    }
                }
            }
        }
    }
    Ok(ops)
}

enum Value<'a> {
    Bytes(&'a [u8]),
    Other,
}

/// The fields of one protobuf message: (field number, value), or an error where the encoding
/// is broken (which ends the iteration).
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Fields { rest: bytes }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.rest.split_first().ok_or("truncated varint")?;
            self.rest = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 64 bits".into())
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], String> {
        let len = usize::try_from(len).map_err(|_| "length out of range")?;
        if len > self.rest.len() {
            return Err(format!(
                "a field of {len} bytes where {} are left",
                self.rest.len()
            ));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn field(&mut self) -> Result<(u32, Value<'a>), String> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| "field number out of range")?;
        let value = match key & 7 {
            0 => self.varint().map(|_| Value::Other)?,
            1 => self.take(8).map(|_| Value::Other)?,
            2 => {
                let len = self.varint()?;
                Value::Bytes(self.take(len)?)
            }
            5 => self.take(4).map(|_| Value::Other)?,
            wire => return Err(format!("wire type {wire} (not in ONNX files)")),
        };
        Ok((number, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (Result<u32, String>, Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        Some(match self.field() {
            Ok((number, value)) => (Ok(number), value),
            Err(e) => {
                self.rest = &[];
                (Err(e), Value::Other)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A length-delimited field.
    fn bytes_field(number: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 128);
        [&[number << 3 | 2, payload.len() as u8][..], payload].concat()
    }

    fn node(op: &str) -> Vec<u8> {
        // name (1), then op_type (4), then an int attribute-like varint field (9)
        [
            bytes_field(3, b"x"),
            bytes_field(4, op.as_bytes()),
            vec![9 << 3, 0x96, 0x01],
        ]
        .concat()
    }

    fn model(ops: &[&str]) -> Vec<u8> {
        let graph: Vec<u8> = ops
            .iter()
            .flat_map(|op| bytes_field(1, &node(op)))
            .collect();
        // ir_version (1, varint), a 32-bit and a 64-bit field, then the graph (7)
        [
            vec![1 << 3, 9],
            vec![2 << 3 | 5, 0, 0, 0, 0],
            vec![3 << 3 | 1, 0, 0, 0, 0, 0, 0, 0, 0],
            bytes_field(7, &graph),
        ]
        .concat()
    }

    #[test]
    fn reads_the_operators_of_the_main_graph() {
        let bytes = model(&["Conv", "Relu", "Sigmoid"]);
        assert_eq!(operators(&bytes).unwrap(), ["Conv", "Relu", "Sigmoid"]);
        assert!(!is_quantized(&bytes).unwrap());
    }

    #[test]
    fn tells_a_quantized_graph() {
        for op in QUANTIZED_OPS {
            let bytes = model(&["Conv", op, "Sigmoid"]);
            assert!(is_quantized(&bytes).unwrap(), "{op}");
        }
    }

    #[test]
    fn a_broken_file_is_an_error() {
        let bytes = model(&["Conv"]);
        let error = operators(&bytes[..bytes.len() - 2]).unwrap_err();
        assert!(error.contains("bytes where"), "{error}");
        assert!(operators(&[0x0f]).unwrap_err().contains("wire type 7"));
        assert!(
            operators(&[0x08, 0x80])
                .unwrap_err()
                .contains("truncated varint")
        );
    }

    #[test]
    fn reads_real_models() {
        let demo = crate::avatar::DEMO
            .get_file("models/generator.onnx")
            .unwrap()
            .contents();
        let ops = operators(demo).unwrap();
        assert!(ops.iter().any(|op| op == "GridSample"), "{ops:?}");
        assert!(!is_quantized(demo).unwrap());
    }
}
