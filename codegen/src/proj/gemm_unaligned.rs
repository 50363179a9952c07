//! The prefill GEMM for shapes the 16-byte loads of [`super::gemm_tiled`] do not fit:
//! 64×64 output tiles, k in steps of 16 through workgroup memory, 4×4 outputs per thread in
//! registers (per accumulator), scalar bounds-checked loads for any size. Every weight
//! element is read once per 64 rows of x.

use super::{binds, epilogue, finish, kind, up_name, ProjShape, ProjValues};
use crate::elementwise::MATH;
use crate::wgsl::{read, WORKGROUP};
use crate::{KernelSource, ProjKernel, Target};
use glufuse_ir::{Layout, Result};
use std::fmt::Write;

/// Prefill GEMM for unaligned shapes: 64×64 output tiles, k in steps of 16 through workgroup
/// memory held as `vec4`s so that one 16-byte read feeds four multiply-adds, 4×4 outputs per
/// thread and accumulator in registers.
pub(crate) fn gemm_unaligned(name: String, s: &ProjShape, v: &ProjValues, t: &Target) -> Result<KernelSource> {
    const BN: usize = 64;
    const BK: usize = 16;
    // Rows per thread: 4. Measured on an H100, 8 rows (with two accumulator sets in the fused
    // kernel) ran slower at M=512 (8.3 ms against 6.9 ms at 4096×14336): register pressure.
    let rt = 4usize;
    let bm = 16 * rt;
    let na = s.na();
    let (go, uo) = s.offsets();
    let elem = if s.f16 { "u32" } else { "f32" };
    let b = binds(s, v, "f32", elem);
    let wread = |w: &str, n: &str, k: &str| {
        let idx = match s.layout {
            Layout::Kn => format!("({k}) * {}u + ({n})", s.n_total),
            Layout::Nk => format!("({n}) * {}u + ({k})", s.k),
        };
        read(w, &idx, s.f16)
    };
    let xq = bm / 4; // x vec4s per k step
    let mut body = String::new();
    let _ = writeln!(
        body,
        "    let tx = lid % 16u;\n    let ty = lid / 16u;\n    let row0 = wg.y * {bm}u;\n    let col0 = wg.x * {BN}u;"
    );
    for a in 0..na {
        for i in 0..rt {
            let _ = writeln!(body, "    var acc{a}_{i} = vec4<f32>(0.0);");
        }
    }
    let _ = writeln!(body, "    for (var k0 = 0u; k0 < {}u; k0 = k0 + {BK}u) {{", s.k);
    // x tile: bm rows × 16 k; adjacent threads read adjacent k of one row.
    let _ = writeln!(
        body,
        "        for (var e = 0u; e < {}u; e++) {{\n            let idx = e * 256u + lid;\n            let r = idx / {BK}u;\n            let kk = idx % {BK}u;\n            let gr = row0 + r;\n            let gk = k0 + kk;\n            var xv = 0.0;\n            if (gr < {}u && gk < {}u) {{ xv = x[gr * {}u + gk]; }}\n            xs[kk * {xq}u + r / 4u][r % 4u] = xv;\n        }}",
        bm * BK / 256,
        s.rows,
        s.k,
        s.k
    );
    let (nmap, kmap) = match s.layout {
        Layout::Kn => ("idx % 64u", "idx / 64u"),
        Layout::Nk => ("idx / 16u", "idx % 16u"),
    };
    let _ = writeln!(
        body,
        "        for (var e = 0u; e < 4u; e++) {{\n            let idx = e * 256u + lid;\n            let nn = {nmap};\n            let kk = {kmap};\n            let gn = col0 + nn;\n            let gk = k0 + kk;\n            let ok = gn < {}u && gk < {}u;",
        s.n, s.k
    );
    let _ = writeln!(
        body,
        "            var g = 0.0;\n            if (ok) {{ g = {}; }}\n            gs[kk * 16u + nn / 4u][nn % 4u] = g;",
        wread("w_gate", &format!("gn + {go}u"), "gk")
    );
    if na == 2 {
        let _ = writeln!(body, "            var u = 0.0;\n            if (ok) {{ u = {}; }}\n            us[kk * 16u + nn / 4u][nn % 4u] = u;", wread(up_name(s), &format!("gn + {uo}u"), "gk"));
    }
    let _ = writeln!(body, "        }}\n        workgroupBarrier();");
    let _ = writeln!(body, "        for (var kk = 0u; kk < {BK}u; kk++) {{");
    for q in 0..rt / 4 {
        let _ = writeln!(body, "            let xa{q} = xs[kk * {xq}u + ty * {}u + {q}u];", rt / 4);
    }
    let _ = writeln!(body, "            let gb = gs[kk * 16u + tx];");
    if na == 2 {
        let _ = writeln!(body, "            let ub = us[kk * 16u + tx];");
    }
    for i in 0..rt {
        let c = ["x", "y", "z", "w"][i % 4];
        let _ = writeln!(body, "            acc0_{i} = fma(vec4<f32>(xa{}.{c}), gb, acc0_{i});", i / 4);
        if na == 2 {
            let _ = writeln!(body, "            acc1_{i} = fma(vec4<f32>(xa{}.{c}), ub, acc1_{i});", i / 4);
        }
    }
    let _ = writeln!(body, "        }}\n        workgroupBarrier();\n    }}");
    for i in 0..rt {
        let _ = writeln!(body, "    let r{i} = row0 + ty * {rt}u + {i}u;\n    if (r{i} < {}u) {{", s.rows);
        for (j, c) in ["x", "y", "z", "w"].iter().enumerate() {
            let g = format!("acc0_{i}.{c}");
            let u = if na == 2 { format!("acc1_{i}.{c}") } else { "0.0".into() };
            let col = format!("col0 + tx * 4u + {j}u");
            let _ = writeln!(
                body,
                "        if ({col} < {}u) {{ out0[r{i} * {}u + {col}] = {}; }}",
                s.n,
                s.n,
                epilogue(s, v, &g, &u, &format!("({col})"))
            );
        }
        let _ = writeln!(body, "    }}");
    }
    let mut prelude = format!(
        "{MATH}\nvar<workgroup> xs: array<vec4<f32>, {}>;\nvar<workgroup> gs: array<vec4<f32>, {}>;\n",
        xq * BK,
        16 * BK
    );
    if na == 2 {
        let _ = writeln!(prelude, "var<workgroup> us: array<vec4<f32>, {}>;", 16 * BK);
    }
    let kind = kind(s, ProjKernel::GemmUnaligned);
    finish(name, kind, &b, &prelude, &body, [s.n.div_ceil(BN) as u64, s.rows.div_ceil(bm) as u64], WORKGROUP, t)
}
