//! Layer normalisation (ONNX `LayerNormalization`): over the axes from `axis` on, `(x -
//! mean) / sqrt(var + epsilon)` (population variance, f64 statistics), then times `scale`
//! and plus `bias`, each optional and broadcast to the normalised axes.

use super::{axis_of, float, out, read_attrs, Attrs};
use crate::op::Op;
use crate::shape::{broadcast, fmt_shape};
use crate::tensor::{broadcast_index, Data, Tensor};
use crate::types::TensorType;
use serde::Deserialize;
use serde_json::json;

/// The name of [`Op::LayerNorm`].
pub const NAME: &str = "LayerNormalization";

/// Type of a layer norm: `x`'s; `scale` and `bias` of its dtype, broadcasting to the
/// normalised axes without growing them.
pub(crate) fn infer(
    axis: i64,
    epsilon: f32,
    scale: bool,
    bias: bool,
    ins: &[&TensorType],
) -> Result<Vec<TensorType>, String> {
    let want = 1 + scale as usize + bias as usize;
    if ins.len() != want {
        return Err(format!("{NAME} with these flags takes {want} input(s), got {}", ins.len()));
    }
    let x = ins[0];
    float(NAME, x)?;
    if !epsilon.is_finite() || epsilon < 0.0 {
        return Err(format!("epsilon {epsilon} must be finite and non-negative"));
    }
    let ax = axis_of(axis, x.rank())?;
    let normed = &x.shape[ax..];
    let names = [("scale", scale), ("bias", bias)].into_iter().filter(|p| p.1).map(|p| p.0);
    for (t, what) in ins[1..].iter().zip(names) {
        if t.dtype != x.dtype {
            return Err(format!("{what} is {} but x is {}", t.dtype, x.dtype));
        }
        if broadcast(normed, &t.shape).ok().as_deref() != Some(normed) {
            return Err(format!(
                "{what} {} does not broadcast to the normalised dims {}",
                fmt_shape(&t.shape),
                fmt_shape(normed)
            ));
        }
    }
    Ok(vec![x.clone()])
}

/// Evaluates a layer norm.
pub(crate) fn eval(
    axis: i64,
    epsilon: f32,
    scale: bool,
    bias: bool,
    ins: &[&Tensor],
    ty: &TensorType,
) -> Result<Vec<Tensor>, String> {
    let t = ins[0];
    let x = t.floats()?;
    let ax = axis_of(axis, t.shape.len())?;
    let inner: usize = t.shape[ax..].iter().product();
    let rows = x.len().checked_div(inner).unwrap_or(0);
    let mut k = 1;
    let mut param = |present: bool| -> Result<Option<Vec<f32>>, String> {
        if !present {
            return Ok(None);
        }
        let p = ins[k];
        k += 1;
        let v = p.floats()?;
        Ok(Some(broadcast_index(&t.shape[ax..], &p.shape).into_iter().map(|i| v[i]).collect()))
    };
    let (s, b) = (param(scale)?, param(bias)?);
    let mut y = vec![0.0f32; x.len()];
    for r in 0..rows {
        let row = &x[r * inner..(r + 1) * inner];
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / inner as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / inner as f64;
        let inv = 1.0 / (var + epsilon as f64).sqrt();
        for (i, &v) in row.iter().enumerate() {
            let mut o = ((v as f64 - mean) * inv) as f32;
            if let Some(s) = &s {
                o *= s[i];
            }
            if let Some(b) = &b {
                o += b[i];
            }
            y[r * inner + i] = o;
        }
    }
    Ok(vec![out(ty, &t.shape, Data::F32(y))])
}

/// Dump label: `LayerNormalization(axis=-1, eps=1e-5, scale, bias)`.
pub(crate) fn label(axis: i64, epsilon: f32, scale: bool, bias: bool) -> String {
    let mut s = format!("{NAME}(axis={axis}, eps={epsilon:e}");
    if scale {
        s.push_str(", scale");
    }
    if bias {
        s.push_str(", bias");
    }
    s + ")"
}

/// JSON attributes: `axis`, `epsilon`, `scale`, `bias`.
pub(crate) fn write_attrs(axis: i64, epsilon: f32, scale: bool, bias: bool, m: &mut Attrs) {
    m.insert("axis".into(), json!(axis));
    m.insert("epsilon".into(), json!(epsilon));
    m.insert("scale".into(), json!(scale));
    m.insert("bias".into(), json!(bias));
}

/// Reads a layer norm from its JSON attributes; `None` for another name.
pub(crate) fn from_json(name: &str, a: &mut Attrs) -> Option<Result<Op, String>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NormAttrs {
        #[serde(default = "last")]
        axis: i64,
        #[serde(default = "eps")]
        epsilon: f32,
        #[serde(default)]
        scale: bool,
        #[serde(default)]
        bias: bool,
    }
    fn last() -> i64 {
        -1
    }
    fn eps() -> f32 {
        1e-5
    }
    (name == NAME).then(|| {
        read_attrs::<NormAttrs>(name, a).map(|n| Op::LayerNorm {
            axis: n.axis,
            epsilon: n.epsilon,
            scale: n.scale,
            bias: n.bias,
        })
    })
}
