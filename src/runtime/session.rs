//! [`Session`]: a graph held on the GPU for repeated calls with inputs of any shape its
//! symbolic dims allow, as a server or a generation loop calls it.
//!
//! # What a call costs
//!
//! - **Every call**: the symbols bound from the inputs' shapes (checked: names, dtypes,
//!   ranks, dims that contradict each other), the inputs converted to the GPU's words and
//!   written into the executable's staging buffer (mapped since the last call), the inputs'
//!   copies, every dispatch (a pipeline, a bind group and a dispatch each: the encoding cost
//!   grows with the dispatch count) and the copies of every output (and of the run-time
//!   checks' error words) into one readback buffer, recorded into command buffers of a few
//!   dozen dispatches (the first on another thread while large inputs are staged), each
//!   submitted as soon as it is recorded so that the GPU starts on the first while the rest
//!   are recorded ([`super::FIRST_SUBMIT`]), one wait (which also maps the staging buffer
//!   again), the outputs converted from the mapped buffer. No buffer, pipeline or bind
//!   group is created ([`Gpu::created`] counts them; `tests/session.rs` checks), and wgpu
//!   makes no staging buffer of its own; the only allocations are the command buffers and
//!   the output tensors returned.
//!   [`Session::run_timed`] says where a call's time went.
//! - **The first call under a new binding** (another batch, sequence or past length) also
//!   makes that binding's [`Executable`]: code generation of every kernel and naga validation
//!   of each distinct kernel code (CPU, several nodes and codes at a time), a pipeline compile
//!   by the driver for each kernel code (WGSL, less its choice comment) the device has not
//!   compiled before, all of them together ([`Gpu::pipelines`]: the costly part; sizes are
//!   baked into the code, so the layers of a model share their code, and a KV-cache step with
//!   another past length recompiles only the kernels whose sizes involve it:
//!   [`Gpu::pipeline_counts`] tells), its intermediate buffers and readback buffer, and its
//!   symbolic constants uploaded. For the Qwen2-0.5B-sized f16 decode step on an H200 that is
//!   224–374 ms for each new past length with every compile cold (5 new pipelines; the decode
//!   attention's compile is 190–340 ms of it), against about 1 ms for the step itself on the
//!   GPU (`benches/results/h200-2026-11-29-build.md`). [`Session::prepare`] builds the
//!   executables of bindings known beforehand (a loop's past lengths), several at a time.
//! - **Once per session**: the weights and constants uploaded.
//! - **A step of a loop that keeps values on the GPU** ([`Session::step`] with a
//!   [`Feedback`]: a decode step's present caches as the next step's past): as a call, less the
//!   fed inputs' conversion and upload and the kept outputs' readback and conversion, plus a
//!   copy of the kept outputs into the session's buffer (one for neighbouring ones) and, at the
//!   next step, a copy of them into the inputs' buffer, and a dispatch rounding f16 ones. The
//!   session keeps two such buffers, the values kept and those the next step writes (a failed
//!   step leaves the kept ones as they were), made larger by a quarter where too small.
//! - **After a pause**: a GPU without work for about a second lowers its clocks (an H100's
//!   SM clock falls from 1980 towards 345 MHz within 2-3 s) and needs 100-300 ms of work to
//!   raise them, so the first calls after a pause run up to 3× slower on the GPU.
//!   [`Session::warm_up`] runs the graph for a given time first.
//!
//! Memory: the weights once; per executable kept, its intermediates (reused within a run as
//! their last reader finishes) and the buffers its inputs and outputs share on the GPU; one
//! staging buffer (the inputs on their way up) and one readback buffer (the outputs on their
//! way back) that every executable of the session calls through, sized for the largest (the
//! session's calls run one at a time). A session keeps the most recently used executables,
//! [`Session::set_capacity`] of them (8 unless set), and drops the least recently used past
//! that.

use super::{CallTimes, Executable, Feed, Feedback, Gpu, Io, Weights};
use crate::codegen::tune::Tuned;
use crate::codegen::{Target, Tiles};
use crate::ir::{DType, Op};
use crate::shape::{bind_inputs, Bindings};
use crate::tensor::Tensor;
use crate::{Error, Graph, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A graph held for repeated runs: weights uploaded once, an executable per binding of the
/// symbolic dims (the most recent kept), pipelines shared through the [`Gpu`]'s cache.
pub struct Session<'a> {
    gpu: &'a Gpu,
    graph: Graph,
    /// The graph's inputs in order, found once ([`Graph::input_nodes`] sorts the graph: 30 µs
    /// a call on a Qwen2-0.5B-sized KV step's 451 nodes).
    input_nodes: Vec<crate::ir::NodeIndex>,
    target: Target,
    weights: Weights,
    /// Executables by binding, least recently used first.
    executables: Vec<(Vec<(String, usize)>, Executable<'a>)>,
    capacity: usize,
    /// The staging and readback buffers every executable of the session calls through,
    /// fitted to the largest built.
    io: Arc<Mutex<Io>>,
    /// The values [`Session::step`] kept on the GPU for the next step.
    kept: Option<Kept>,
    /// The buffer the next step keeps its outputs in: the one kept before the last step, so
    /// that a step that fails leaves the values kept as they were.
    spare: Option<wgpu::Buffer>,
    /// The feedback the last step checked against the graph, and the input slot each of its
    /// pairs feeds (in the order of the graph's inputs): a loop's steps check it once.
    checked: Option<(Feedback, Vec<usize>)>,
}

/// Graph outputs kept on the GPU as graph inputs' next values: one buffer of the session's,
/// and by graph input where its words lie there (from the offset on), its dims and dtype.
struct Kept {
    buffer: wgpu::Buffer,
    values: HashMap<String, (u64, Vec<usize>, DType)>,
}

impl<'a> Session<'a> {
    /// A session of `graph` on `gpu`: its weights and constants are uploaded now.
    pub fn new(gpu: &'a Gpu, graph: Graph) -> Result<Self> {
        let target = gpu.target();
        Self::with_target(gpu, graph, target)
    }

    /// [`Session::new`] with code generation options of the caller's choosing; `target`
    /// must not promise more than [`Gpu::target`].
    pub fn with_target(gpu: &'a Gpu, graph: Graph, target: Target) -> Result<Self> {
        let weights = Weights::upload(gpu, &graph)?;
        let input_nodes = graph.input_nodes();
        let io = Arc::new(Mutex::new(Io::new()));
        Ok(Session {
            gpu,
            graph,
            input_nodes,
            target,
            weights,
            executables: vec![],
            capacity: 8,
            io,
            kept: None,
            spare: None,
            checked: None,
        })
    }

    /// The graph it runs.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// How many executables (bindings) to keep; at least 1. Fewer than are kept now drops
    /// the least recently used.
    pub fn set_capacity(&mut self, n: usize) {
        self.capacity = n.max(1);
        let excess = self.executables.len().saturating_sub(self.capacity);
        self.executables.drain(..excess);
    }

    /// How many executables it keeps now.
    pub fn executables(&self) -> usize {
        self.executables.len()
    }

    /// Binds the graph's symbolic dims from the inputs' shapes (`given`: sizes fixed
    /// beforehand), checking every input: one the graph does not have (the error lists
    /// those it has), a missing one, a wrong dtype or rank, a dim that contradicts another
    /// input's binding of the same symbol. Errors name the input.
    pub fn bind(&self, inputs: &HashMap<String, Tensor>, given: &Bindings) -> Result<Bindings> {
        self.bind_from(inputs, |t| (t.dtype(), t.shape()), given)
    }

    /// [`Session::bind`] from the inputs' shapes alone (by name; no dtype to check), as a
    /// call with inputs of those shapes binds: the bindings [`Session::prepare`] takes for
    /// calls yet to come.
    pub fn bind_shapes<S: AsRef<[usize]>>(&self, shapes: &HashMap<String, S>, given: &Bindings) -> Result<Bindings> {
        self.bind_from(shapes, |s| (None, s.as_ref()), given)
    }

    /// The binding of inputs by name, each with its dtype (checked where given) and shape.
    fn bind_from<'v, K, V, D>(
        &self,
        inputs: &'v HashMap<K, V>,
        of: impl Fn(&'v V) -> (D, &'v [usize]),
        given: &Bindings,
    ) -> Result<Bindings>
    where
        K: std::borrow::Borrow<str> + std::hash::Hash + Eq,
        D: Into<Option<DType>>,
    {
        let g = &self.graph;
        let nodes = &self.input_nodes;
        for name in inputs.keys().map(|k| k.borrow()) {
            if !g.find(name).is_some_and(|n| matches!(g.node(n).op, Op::Input)) {
                let names: Vec<&str> = nodes.iter().map(|&n| g.node(n).name.as_str()).collect();
                return Err(Error::input(format!(
                    "the graph has no input '{name}'; its inputs are: {}",
                    names.join(", ")
                )));
            }
        }
        let mut list = vec![];
        for &n in nodes {
            let node = g.node(n);
            let v = inputs
                .get(node.name.as_str())
                .ok_or_else(|| Error::graph(&node.name, "no value was given for this graph input"))?;
            let ty = &node.outputs[0];
            let (dtype, shape) = of(v);
            if let Some(d) = dtype.into().filter(|&d| d != ty.dtype) {
                return Err(Error::graph(
                    &node.name,
                    format!("the graph input is {} but the value given is {d}", ty.dtype),
                ));
            }
            list.push((node.name.as_str(), ty, shape));
        }
        let mut b = given.clone();
        bind_inputs(&list, &mut b)?;
        Ok(b)
    }

    /// The executable for binding `b`: the one kept for it, or a new one (which may drop the
    /// least recently used).
    pub fn executable(&mut self, b: &Bindings) -> Result<&mut Executable<'a>> {
        let i = self.executable_index(b)?;
        Ok(&mut self.executables[i].1)
    }

    /// [`Session::executable`], as its index in `executables` (the last).
    fn executable_index(&mut self, b: &Bindings) -> Result<usize> {
        let key = key_of(b);
        let exe = match self.executables.iter().position(|(k, _)| *k == key) {
            Some(i) => self.executables.remove(i).1,
            None => {
                if self.executables.len() >= self.capacity {
                    self.executables.remove(0);
                }
                let exe = self.build(b)?;
                self.fit_io(&[&exe])?;
                exe
            }
        };
        self.executables.push((key, exe));
        Ok(self.executables.len() - 1)
    }

    /// Builds the executables of `bindings` that the session does not keep yet, several at a
    /// time, and keeps them: a generation loop over a KV step exported with a dynamic cache
    /// prepares the past lengths it will reach, and its calls then build nothing. Each
    /// executable's build is mostly its new pipelines (a decode attention's code differs for
    /// every past length), compiled one after another within a build and in parallel across
    /// them: on the H200 machine, the Qwen2-0.5B-sized f16 step's 5 new codes a length took
    /// 224–374 ms one length at a time (`benches/results/h200-2026-11-29-build.md`).
    ///
    /// The first new binding is built alone (it compiles the codes the others share), the
    /// rest together. Bindings kept already are marked as just used. Errors, before anything
    /// is built: a binding that leaves a symbol of the inputs' shapes unbound, or names one
    /// the graph does not have (the calls' bindings would never be that one), or more
    /// bindings than the session keeps ([`Session::set_capacity`]; counting those kept
    /// already, which the new ones then do not evict). An executable that fails to build is
    /// the error; those built before it in order are kept.
    pub fn prepare(&mut self, bindings: &[Bindings]) -> Result<()> {
        // A call's binding has every input's symbols and those given for it, all of them the
        // graph's: one that differs would build an executable no call finds.
        let g = &self.graph;
        let of_inputs: Vec<String> = self
            .input_nodes
            .iter()
            .flat_map(|&n| g.node(n).outputs[0].shape.iter().flat_map(|d| d.symbols()))
            .collect();
        let mut all: std::collections::HashSet<String> = std::collections::HashSet::new();
        for n in g.topo_order()? {
            all.extend(g.node(n).outputs.iter().flat_map(|t| t.shape.iter().flat_map(|d| d.symbols())));
        }
        for b in bindings {
            if let Some(s) = of_inputs.iter().find(|s| !b.contains_key(*s)) {
                return Err(Error::input(format!(
                    "a binding to prepare leaves the inputs' symbolic dim '{s}' unbound"
                )));
            }
            if let Some(s) = b.keys().find(|s| !all.contains(*s)) {
                return Err(Error::input(format!(
                    "a binding to prepare names '{s}', which is no symbolic dim of the graph"
                )));
            }
        }
        let mut distinct: Vec<(Vec<(String, usize)>, &Bindings)> = vec![];
        for b in bindings {
            let key = key_of(b);
            if !distinct.iter().any(|(k, _)| *k == key) {
                distinct.push((key, b));
            }
        }
        if distinct.len() > self.capacity {
            return Err(Error::input(format!(
                "{} bindings to prepare, more than the session keeps ({}): raise it with Session::set_capacity",
                distinct.len(),
                self.capacity
            )));
        }
        // Those kept already become the most recently used, so that the new ones evict others.
        let mut new = vec![];
        for (key, b) in distinct {
            match self.executables.iter().position(|(k, _)| *k == key) {
                Some(i) => {
                    let kept = self.executables.remove(i);
                    self.executables.push(kept);
                }
                None => new.push((key, b)),
            }
        }
        let mut built: Vec<Result<Executable<'a>>> = vec![];
        if let Some((first, rest)) = new.split_first() {
            built.push(self.build(first.1));
            if built[0].is_ok() {
                use rayon::prelude::*;
                built.par_extend(rest.par_iter().map(|(_, b)| self.build(b)));
            }
        }
        // The session's buffers fitted to the largest built, once (each calls through them).
        self.fit_io(&built.iter().filter_map(|e| e.as_ref().ok()).collect::<Vec<_>>())?;
        for ((key, _), exe) in new.into_iter().zip(built) {
            if self.executables.len() >= self.capacity {
                self.executables.remove(0);
            }
            self.executables.push((key, exe?));
        }
        Ok(())
    }

    /// A new executable of binding `b`, calling through the session's staging and readback
    /// buffers.
    fn build(&self, b: &Bindings) -> Result<Executable<'a>> {
        Executable::build_with(self.gpu, &self.graph, b, &self.target, &self.weights, self.io.clone())
    }

    /// Fits the session's staging and readback buffers to the largest of `exes`, so that
    /// their calls make none.
    fn fit_io(&self, exes: &[&Executable<'a>]) -> Result<()> {
        let staged = exes.iter().map(|e| e.staged).max().unwrap_or(0);
        let read = exes.iter().map(|e| e.read).max().unwrap_or(0);
        Io::lock(&self.io).fit(self.gpu, staged, read)
    }

    /// Tunes the prefill GEMMs of binding `b`'s executable ([`Executable::tune_gemms`]).
    pub fn tune_gemms(&mut self, b: &Bindings, candidates: &[Tiles]) -> Result<Vec<Tuned>> {
        self.executable(b)?;
        let (graph, target) = (&self.graph, &self.target);
        let exe = &mut self.executables.last_mut().expect("just made").1;
        exe.tune_gemms(graph, b, target, candidates)
    }

    /// Runs the graph on `inputs` (every graph input, by name), its symbols bound from their
    /// shapes, and returns every output in order.
    pub fn run(&mut self, inputs: &HashMap<String, Tensor>) -> Result<Vec<Tensor>> {
        self.run_with(inputs, &Bindings::new())
    }

    /// [`Session::run`] with sizes fixed beforehand (`given`), for symbols no input binds.
    pub fn run_with(&mut self, inputs: &HashMap<String, Tensor>, given: &Bindings) -> Result<Vec<Tensor>> {
        Ok(self.run_timed(inputs, given)?.0)
    }

    /// Runs the graph on `inputs` once, then keeps the GPU busy with it for `d`
    /// ([`Executable::warm_up`]: after about a second without work a GPU's clocks fall, and
    /// the next calls run slower until they are up again); returns the runs after the first.
    pub fn warm_up(
        &mut self,
        inputs: &HashMap<String, Tensor>,
        given: &Bindings,
        d: std::time::Duration,
    ) -> Result<usize> {
        let b = self.bind(inputs, given)?;
        let exe = self.executable(&b)?;
        exe.run(inputs)?;
        exe.warm_up(d)
    }

    /// [`Session::run_with`], and where the call's CPU time went (binding and finding the
    /// executable in `bind_us`; a first call under a binding also builds its executable
    /// there).
    pub fn run_timed(
        &mut self,
        inputs: &HashMap<String, Tensor>,
        given: &Bindings,
    ) -> Result<(Vec<Tensor>, CallTimes)> {
        let t0 = std::time::Instant::now();
        let b = self.bind(inputs, given)?;
        let exe = self.executable(&b)?;
        let bind_us = t0.elapsed().as_secs_f64() * 1e6;
        let (out, times) = exe.run_timed(inputs)?;
        Ok((out, CallTimes { bind_us, ..times }))
    }
}

impl<'a> Session<'a> {
    /// Runs one step of a loop whose `feedback` outputs become the next step's inputs on the
    /// GPU (a decode step's present keys and values, the next step's past: [`Feedback::caches`]),
    /// and returns the outputs not fed back, in order.
    ///
    /// Each input `feedback` feeds is taken from the GPU where `inputs` does not give it: the
    /// output the last step kept for it, copied there, neither read back nor uploaded again
    /// (an error naming it where no step has kept one yet). Given, it is uploaded as [`Session::run`]
    /// uploads it: the first step of a loop gives every input; a later one may give them again
    /// to start over. The symbols bind from the given inputs and the kept values' shapes, as in
    /// [`Session::bind`]. A step that fails (a bad input, an id out of range) keeps the values
    /// the step before kept. [`Session::fed_value`] reads a kept value back.
    ///
    /// What it saves, a step: the fed outputs' readback and conversion, the fed inputs'
    /// conversion and upload (over the bus); what it adds: two copies of each fed value on the
    /// GPU (into the session's buffer at the end of a step, out of it at the start of the next).
    pub fn step(
        &mut self,
        inputs: &HashMap<String, Tensor>,
        given: &Bindings,
        feedback: &Feedback,
    ) -> Result<Vec<Tensor>> {
        Ok(self.step_timed(inputs, given, feedback)?.0)
    }

    /// [`Session::step`], and where the call's CPU time went (as [`Session::run_timed`]).
    pub fn step_timed(
        &mut self,
        inputs: &HashMap<String, Tensor>,
        given: &Bindings,
        feedback: &Feedback,
    ) -> Result<(Vec<Tensor>, CallTimes)> {
        let t0 = std::time::Instant::now();
        let slots = match &self.checked {
            Some((f, slots)) if f == feedback => slots.clone(),
            _ => {
                feedback.check(&self.graph)?;
                let slots = feedback
                    .pairs
                    .iter()
                    .map(|(_, _, inp)| {
                        self.input_nodes
                            .iter()
                            .position(|&n| self.graph.node(n).name == *inp)
                            .ok_or_else(|| Error::Internal(format!("no graph input '{inp}'")))
                    })
                    .collect::<Result<Vec<usize>>>()?;
                self.checked = Some((feedback.clone(), slots.clone()));
                slots
            }
        };
        // The shapes to bind: the given inputs', and the kept values' of the fed inputs not given.
        let mut shapes: HashMap<&str, (DType, &[usize])> =
            inputs.iter().map(|(k, t)| (k.as_str(), (t.dtype(), t.shape()))).collect();
        for (_, out, inp) in &feedback.pairs {
            if inputs.contains_key(inp) {
                continue;
            }
            let (_, dims, dtype) = self.kept.as_ref().and_then(|k| k.values.get(inp)).ok_or_else(|| {
                Error::graph(
                    inp,
                    format!(
                        "no value was given for this graph input and no step has kept one: it is fed back from output '{out}', so the first step gives it"
                    ),
                )
            })?;
            shapes.insert(inp, (*dtype, dims));
        }
        let b = self.bind_from(&shapes, |(d, s)| (Some(*d), *s), given)?;
        let i = self.executable_index(&b)?;
        let exe = &self.executables[i].1;
        // Where the fed outputs go in the buffer that keeps them, made (or made larger) where
        // it is too small: a quarter more than asked, so that a growing cache makes one every
        // few steps.
        let outs: Vec<usize> = feedback.pairs.iter().map(|p| p.0).collect();
        let (offsets, bytes) = exe.kept_layout(&outs)?;
        if self.spare.as_ref().is_none_or(|b| b.size() < bytes.max(4)) {
            let max = self.gpu.limits.max_buffer_size;
            let size = (bytes + bytes / 4).next_multiple_of(256).min(max).max(bytes).max(4);
            let desc = wgpu::BufferDescriptor {
                label: Some("outputs fed back"),
                size,
                usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            };
            let buffer =
                self.gpu.scoped("allocating the buffer of the outputs fed back", || self.gpu.create_buffer(&desc))?;
            self.spare = Some(buffer);
        }
        let mut feed = Feed {
            from: self.kept.as_ref().map(|k| &k.buffer),
            inputs: vec![None; self.input_nodes.len()],
            into: self.spare.as_ref(),
            outputs: vec![None; self.graph.outputs.len()],
        };
        let mut values = HashMap::new();
        for (((j, out, inp), &at), &k) in feedback.pairs.iter().zip(&offsets).zip(&slots) {
            feed.outputs[*j] = Some(at);
            let (dims, dtype, packed) =
                exe.output_type(*j).ok_or_else(|| Error::Internal(format!("no output {j} in the executable")))?;
            if packed {
                return Err(Error::input(format!(
                    "graph output '{out}' cannot be fed back to '{inp}': the GPU stores it as packed f16 (two values a word: an f16 output no node reads, written by a row program or a cooperative GEMM), which no graph input takes"
                )));
            }
            values.insert(inp.clone(), (at, dims.to_vec(), dtype));
            if inputs.contains_key(inp) {
                continue;
            }
            let (from, dims, dtype) = self
                .kept
                .as_ref()
                .and_then(|k| k.values.get(inp))
                .ok_or_else(|| Error::Internal(format!("no value kept for '{inp}'")))?;
            match exe.input_type(k) {
                Some((d, t)) if d == dims.as_slice() && t == *dtype => {}
                _ => return Err(Error::Internal(format!("the value kept for '{inp}' does not fit its executable"))),
            }
            feed.inputs[k] = Some(*from);
        }
        let bind_us = t0.elapsed().as_secs_f64() * 1e6;
        let (out, times) = exe.call(inputs, Some(&feed))?;
        // This step's outputs are the values kept now; the buffer kept before takes the next.
        if let Some(buffer) = self.spare.take() {
            if let Some(old) = self.kept.replace(Kept { buffer, values }) {
                self.spare = Some(old.buffer);
            }
        }
        Ok((out, CallTimes { bind_us, ..times }))
    }

    /// The value the last [`Session::step`] kept on the GPU for graph input `input`, read
    /// back (an error where none is kept).
    pub fn fed_value(&self, input: &str) -> Result<Tensor> {
        let (kept, (at, dims, dtype)) = self
            .kept
            .as_ref()
            .and_then(|k| k.values.get(input).map(|v| (k, v)))
            .ok_or_else(|| Error::graph(input, "no step has kept a value on the GPU for this graph input"))?;
        let n = dims.iter().product::<usize>();
        let bytes = (n as u64 * 4).max(4);
        let dev = &self.gpu.device;
        let desc = wgpu::BufferDescriptor {
            label: Some("fed value"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        };
        let read = self.gpu.scoped("reading a fed value back", || {
            let read = self.gpu.create_buffer(&desc);
            let mut enc = dev.create_command_encoder(&Default::default());
            if n > 0 {
                enc.copy_buffer_to_buffer(&kept.buffer, *at, &read, 0, n as u64 * 4);
            }
            self.gpu.queue.submit([enc.finish()]);
            read
        })?;
        super::map_and_wait(self.gpu, &read, wgpu::MapMode::Read, "reading a fed value back")?;
        let t = match read.slice(..).get_mapped_range() {
            Ok(view) => {
                let words: &[u32] = bytemuck::cast_slice(&view);
                Tensor::from_gpu_words(*dtype, dims.clone(), &words[..n])
            }
            Err(e) => Err(Error::Gpu(format!("reading a fed value back: {e}"))),
        };
        read.unmap();
        t
    }

    /// Drops the values kept on the GPU by [`Session::step`] and their buffers: the next step
    /// gives every fed input again.
    pub fn forget_fed(&mut self) {
        self.kept = None;
        self.spare = None;
    }
}

/// A binding as the key of its executable: its symbols and sizes, sorted.
fn key_of(b: &Bindings) -> Vec<(String, usize)> {
    let mut key: Vec<(String, usize)> = b.iter().map(|(k, &v)| (k.clone(), v)).collect();
    key.sort();
    key
}
