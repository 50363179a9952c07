//! The scalar projection template: any alignment, any mix of weight storage, for whatever
//! the GEMVs and GEMMs do not take.
//!
//! A workgroup of 256 threads computes a tile of output columns for up to [`TM`] rows. Its
//! threads split into column slots and k-lanes: `[K, N]` weights put 64 columns side by side
//! (adjacent threads read adjacent columns of a row of W), `[N, K]` weights put 32 lanes
//! along k (adjacent threads read adjacent elements of a row of W). Each thread accumulates
//! its share of k in f32, the lanes are summed through workgroup memory, and the epilogue
//! applies bias, activation and product before one write. Each weight element is read once
//! per row tile; x is read from global memory (cached) as it is small.

use super::{kind, ProjShape};
use crate::elementwise::{act_call, MATH};
use crate::wgsl::{module, read, WORKGROUP};
use crate::{packed_f16, Binding, KernelSource, ProjKernel, Target};
use glufuse_ir::{Error, Graph, Layout, Result, Value};
use std::fmt::Write;

/// Rows of x per workgroup.
pub const TM: usize = 4;

/// The scalar template: any alignment, any mix of weight storage.
pub(crate) fn scalar(
    g: &Graph,
    name: String,
    ins: &[Value],
    out: Value,
    s: &ProjShape,
    t: &Target,
) -> Result<KernelSource> {
    let tm = s.rows.min(TM);
    let (tn, lanes) = match s.layout {
        Layout::Kn => (64usize, 4usize),
        Layout::Nk => (8, 32),
    };
    let na = if s.fused.is_some() { 2 } else { 1 };
    // Bindings: x, weight(s) (a merged gate_up weight is bound once), biases, output.
    let mut binds: Vec<(String, bool, bool)> = vec![("x".into(), false, false)];
    let mut bindings = vec![Binding { value: ins[0], write: false, packed_f16: false }];
    let mut bind = |name: &str, v: Value, binds: &mut Vec<(String, bool, bool)>| {
        binds.push((name.into(), false, packed_f16(g, v)));
        bindings.push(Binding { value: v, write: false, packed_f16: packed_f16(g, v) });
    };
    bind("w_gate", ins[1], &mut binds);
    let wu_name = if s.merged { "w_gate" } else { "w_up" };
    if let Some(f) = &s.fused {
        if !s.merged {
            bind("w_up", ins[2], &mut binds);
        }
        let mut k_in = 3;
        if f.gate_bias {
            bind("b_gate", ins[k_in], &mut binds);
            k_in += 1;
        }
        if f.up_bias {
            bind("b_up", ins[k_in], &mut binds);
        }
    }
    binds.push(("out0".into(), true, false));
    bindings.push(Binding { value: out, write: true, packed_f16: false });

    let w_idx = |col: &str| match s.layout {
        Layout::Kn => format!("k * {}u + {col}", s.n_total),
        Layout::Nk => format!("({col}) * {}u + k", s.k),
    };
    let (goff, uoff) = s.fused.as_ref().map_or((0, 0), |f| (f.gate_offset, f.up_offset));
    let pu = s.fused.is_some() && packed_f16(g, ins[2]);
    let mut b = String::new();
    let (slot, lane) = match s.layout {
        Layout::Kn => ("lid % 64u", "lid / 64u"),
        Layout::Nk => ("lid / 32u", "lid % 32u"),
    };
    let _ = writeln!(
        b,
        "    let c = {slot};\n    let lane = {lane};\n    let col = wg.x * {tn}u + c;\n    let row0 = wg.y * {tm}u;"
    );
    for r in 0..tm {
        let _ = writeln!(b, "    var ag{r} = 0.0;");
        if na == 2 {
            let _ = writeln!(b, "    var au{r} = 0.0;");
        }
        let _ = writeln!(b, "    let xr{r} = min(row0 + {r}u, {}u) * {}u;", s.rows - 1, s.k);
    }
    let _ = writeln!(b, "    if (col < {}u) {{", s.n);
    let _ = writeln!(b, "        for (var k = lane; k < {}u; k = k + {lanes}u) {{", s.k);
    let _ = writeln!(b, "            let gw = {};", read("w_gate", &w_idx(&format!("col + {goff}u")), s.f16));
    if na == 2 {
        let _ = writeln!(b, "            let uw = {};", read(wu_name, &w_idx(&format!("col + {uoff}u")), pu));
    }
    for r in 0..tm {
        let _ = writeln!(b, "            let x{r} = x[xr{r} + k];");
        let _ = writeln!(b, "            ag{r} = ag{r} + x{r} * gw;");
        if na == 2 {
            let _ = writeln!(b, "            au{r} = au{r} + x{r} * uw;");
        }
    }
    let _ = writeln!(b, "        }}\n    }}");
    for r in 0..tm {
        let _ = writeln!(b, "    red[{}u + lid] = ag{r};", (r * na) * WORKGROUP as usize);
        if na == 2 {
            let _ = writeln!(b, "    red[{}u + lid] = au{r};", (r * na + 1) * WORKGROUP as usize);
        }
    }
    let _ = writeln!(b, "    workgroupBarrier();");
    let _ = writeln!(b, "    if (lane != 0u || col >= {}u) {{ return; }}", s.n);
    let lane_idx = match s.layout {
        Layout::Kn => "c + l * 64u",
        Layout::Nk => "c * 32u + l",
    };
    for r in 0..tm {
        let _ = writeln!(b, "    if (row0 + {r}u < {}u) {{", s.rows);
        let _ = writeln!(b, "        var sg = 0.0;");
        if na == 2 {
            let _ = writeln!(b, "        var su = 0.0;");
        }
        let _ = writeln!(b, "        for (var l = 0u; l < {lanes}u; l++) {{");
        let _ = writeln!(b, "            sg = sg + red[{}u + {lane_idx}];", (r * na) * WORKGROUP as usize);
        if na == 2 {
            let _ = writeln!(b, "            su = su + red[{}u + {lane_idx}];", (r * na + 1) * WORKGROUP as usize);
        }
        let _ = writeln!(b, "        }}");
        let result = match &s.fused {
            None => "sg".to_string(),
            Some(f) => {
                let gb = if f.gate_bias {
                    format!(" + {}", read("b_gate", &format!("col + {goff}u"), packed_f16(g, ins[3])))
                } else {
                    String::new()
                };
                let ub_idx = 3 + f.gate_bias as usize;
                let ub = if f.up_bias {
                    format!(" + {}", read("b_up", &format!("col + {uoff}u"), packed_f16(g, ins[ub_idx])))
                } else {
                    String::new()
                };
                format!("{} * (su{ub})", act_call(f.activation, &format!("sg{gb}")))
            }
        };
        let _ = writeln!(b, "        out0[(row0 + {r}u) * {}u + col] = {result};\n    }}", s.n);
    }
    let prelude = format!("{MATH}\nvar<workgroup> red: array<f32, {}>;\n", tm * na * WORKGROUP as usize);
    let tiles_n = s.n.div_ceil(tn) as u64;
    let tiles_m = s.rows.div_ceil(tm) as u64;
    let max = t.max_workgroups_per_dim as u64;
    if tiles_n > max || tiles_m > max {
        return Err(Error::Gpu(format!(
            "'{name}' needs {tiles_n}×{tiles_m} workgroups, past this device's limit of {max} per dimension"
        )));
    }
    Ok(KernelSource {
        scratch_bytes: 0,
        flag_words: 0,
        name,
        kind: kind(s, ProjKernel::Scalar(s.layout)),
        wgsl: module(&binds, WORKGROUP, &prelude, &b),
        bindings,
        workgroup_size: WORKGROUP,
        choice: None,
        workgroups: [tiles_n as u32, tiles_m as u32, 1],
        checks: vec![],
    })
}
