// Package graph holds an ONNX model in memory and cuts it in two.
//
// A Model is loaded from ONNX protobuf bytes, keeps the parsed message
// untouched (fields tracr does not know survive a load/save round trip) and
// derives from it what cutting needs: the tensor table (who produces and who
// consumes each tensor), a canonical topological order of the compute nodes,
// and which graph inputs are really initialisers. Cuts numbers the prefix cuts
// of that order; Partition turns any predecessor-closed set of nodes into a
// runnable head and tail. Nothing here runs a model: see package engine.
package graph

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"google.golang.org/protobuf/proto"

	"tracr/graph/onnxpb"
	"tracr/tensor"
)

// Node is one compute node of a model, numbered along the canonical
// topological order. Constant producers are not Nodes: they are duplicated
// into whichever half needs them.
type Node struct {
	// ID is the node's position in the canonical order, 0-based.
	ID int
	// Name is the node's name in the file, or "<op>_<file index>" when the
	// file leaves it empty.
	Name   string
	OpType string
	// Inputs lists every tensor the node reads: its explicit inputs followed
	// by tensors captured from the outer scope by its subgraphs (If, Loop,
	// Scan bodies). Empty optional inputs are left out.
	Inputs  []string
	Outputs []string

	proto *onnxpb.NodeProto
}

// Model is a parsed ONNX model with its tensor table and canonical order.
// A Model is immutable after Parse except through SetTensorType; it is safe
// to read from several goroutines.
type Model struct {
	proto *onnxpb.ModelProto

	nodes  []Node                         // compute nodes, canonical order
	consts []*onnxpb.NodeProto            // constant producers, file order
	order  []*onnxpb.NodeProto            // every kept node (constants and compute), a topological order
	dead   int                            // nodes that reach no graph output, dropped
	inputs []string                       // real graph inputs, in file order
	inits  map[string]bool                // initialiser names (dense and sparse)
	initp  map[string]*onnxpb.TensorProto // dense initialisers by name
	sample map[string]tensor.Shape        // shapes measured by a probe run
	outs   []string                       // graph outputs, in file order
	info   map[string]*onnxpb.ValueInfoProto
	prod   map[string]int                 // tensor -> producing compute node ID
	cons   map[string][]int               // tensor -> consuming compute node IDs
	idOf   map[*onnxpb.NodeProto]int      // compute node -> ID
	needs  map[*onnxpb.NodeProto][]string // every node's full input list (with captures)
}

// Load reads and parses the ONNX model at path.
func Load(path string) (*Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", path, err)
	}
	return m, nil
}

// Parse parses ONNX protobuf bytes and builds the tensor table.
func Parse(data []byte) (*Model, error) {
	if len(data) == 0 {
		return nil, errors.New("not an ONNX model: empty file")
	}
	var mp onnxpb.ModelProto
	if err := proto.Unmarshal(data, &mp); err != nil {
		return nil, fmt.Errorf("not an ONNX model: %w", err)
	}
	return FromProto(&mp)
}

// FromProto wraps an already decoded model. The model must not be changed
// afterwards.
func FromProto(mp *onnxpb.ModelProto) (*Model, error) {
	g := mp.GetGraph()
	if g == nil || mp.IrVersion == nil {
		return nil, errors.New("not an ONNX model: no ir_version or graph")
	}
	if len(mp.GetOpsetImport()) == 0 && mp.GetIrVersion() >= 3 {
		return nil, errors.New("not an ONNX model: no opset_import")
	}
	m := &Model{
		proto:  mp,
		inits:  map[string]bool{},
		initp:  map[string]*onnxpb.TensorProto{},
		sample: map[string]tensor.Shape{},
		info:   map[string]*onnxpb.ValueInfoProto{},
		prod:   map[string]int{},
		cons:   map[string][]int{},
		needs:  map[*onnxpb.NodeProto][]string{},
		idOf:   map[*onnxpb.NodeProto]int{},
	}
	for _, t := range g.GetInitializer() {
		m.inits[t.GetName()] = true
		m.initp[t.GetName()] = t
	}
	for _, t := range g.GetSparseInitializer() {
		m.inits[t.GetValues().GetName()] = true
	}
	for _, vi := range g.GetValueInfo() {
		m.info[vi.GetName()] = vi
	}
	for _, vi := range g.GetOutput() {
		m.info[vi.GetName()] = vi
		m.outs = append(m.outs, vi.GetName())
	}
	for _, vi := range g.GetInput() {
		m.info[vi.GetName()] = vi
		if !m.inits[vi.GetName()] {
			m.inputs = append(m.inputs, vi.GetName())
		}
	}
	if len(m.outs) == 0 {
		return nil, errors.New("graph has no outputs")
	}
	order, err := topoOrder(g, m.inits, m.needs)
	if err != nil {
		return nil, err
	}
	m.classify(order)
	return m, nil
}

// topoOrder returns the graph's nodes in a topological order that keeps file
// order wherever the file allows it (Kahn's algorithm, lowest file index
// first), so a well-formed file's own order is the canonical one.
func topoOrder(g *onnxpb.GraphProto, inits map[string]bool, needs map[*onnxpb.NodeProto][]string) ([]*onnxpb.NodeProto, error) {
	nodes := g.GetNode()
	producer := map[string]int{}
	for i, n := range nodes {
		for _, o := range n.GetOutput() {
			if o == "" {
				continue
			}
			if _, dup := producer[o]; dup {
				return nil, fmt.Errorf("tensor %q is produced by two nodes", o)
			}
			producer[o] = i
		}
		needs[n] = nodeInputs(n)
	}
	avail := map[string]bool{}
	for _, vi := range g.GetInput() {
		avail[vi.GetName()] = true
	}
	for name := range inits {
		avail[name] = true
	}
	indeg := make([]int, len(nodes))
	users := make([][]int, len(nodes))
	for i, n := range nodes {
		for _, in := range needs[n] {
			p, ok := producer[in]
			switch {
			case ok:
				indeg[i]++
				users[p] = append(users[p], i)
			case avail[in]:
			default:
				return nil, fmt.Errorf("node %s (%s) reads tensor %q that nothing produces", nodeLabel(n, i), n.GetOpType(), in)
			}
		}
	}
	ready := &intHeap{}
	for i := range nodes {
		if indeg[i] == 0 {
			ready.push(i)
		}
	}
	order := make([]*onnxpb.NodeProto, 0, len(nodes))
	for ready.len() > 0 {
		i := ready.pop()
		order = append(order, nodes[i])
		for _, u := range users[i] {
			indeg[u]--
			if indeg[u] == 0 {
				ready.push(u)
			}
		}
	}
	if len(order) != len(nodes) {
		return nil, fmt.Errorf("graph has a cycle through %d nodes", len(nodes)-len(order))
	}
	return order, nil
}

// nondeterministic ops must run exactly once, so they are never treated as
// constants even when they read nothing.
var nondeterministic = map[string]bool{
	"RandomNormal": true, "RandomUniform": true, "RandomNormalLike": true,
	"RandomUniformLike": true, "Multinomial": true, "Bernoulli": true,
}

// classify splits the ordered nodes into constant producers (every input a
// constant, deterministic) and compute nodes, drops nodes that reach no graph
// output, and fills the tensor table.
func (m *Model) classify(order []*onnxpb.NodeProto) {
	constant := map[string]bool{}
	for name := range m.inits {
		constant[name] = true
	}
	isConst := map[*onnxpb.NodeProto]bool{}
	for _, n := range order {
		if nondeterministic[n.GetOpType()] || len(n.GetOutput()) == 0 {
			continue
		}
		all := true
		for _, in := range m.needs[n] {
			if !constant[in] {
				all = false
				break
			}
		}
		if !all {
			continue
		}
		isConst[n] = true
		for _, o := range n.GetOutput() {
			constant[o] = true
		}
	}
	// Liveness: walk back from the graph outputs.
	live := map[string]bool{}
	for _, o := range m.outs {
		live[o] = true
	}
	keep := map[*onnxpb.NodeProto]bool{}
	for i := len(order) - 1; i >= 0; i-- {
		n := order[i]
		used := false
		for _, o := range n.GetOutput() {
			if live[o] {
				used = true
				break
			}
		}
		if !used {
			m.dead++
			continue
		}
		keep[n] = true
		for _, in := range m.needs[n] {
			live[in] = true
		}
	}
	fileIndex := map[*onnxpb.NodeProto]int{}
	for i, n := range m.proto.GetGraph().GetNode() {
		fileIndex[n] = i
	}
	for _, n := range order {
		if !keep[n] {
			continue
		}
		m.order = append(m.order, n)
		if isConst[n] {
			m.consts = append(m.consts, n)
			continue
		}
		id := len(m.nodes)
		m.idOf[n] = id
		node := Node{ID: id, Name: nodeLabel(n, fileIndex[n]), OpType: n.GetOpType(), proto: n}
		for _, in := range m.needs[n] {
			node.Inputs = append(node.Inputs, in)
			if !constant[in] {
				m.cons[in] = append(m.cons[in], id)
			}
		}
		for _, o := range n.GetOutput() {
			if o == "" {
				continue
			}
			node.Outputs = append(node.Outputs, o)
			m.prod[o] = id
		}
		m.nodes = append(m.nodes, node)
	}
}

// nodeInputs returns a node's explicit non-empty inputs followed by the
// outer-scope tensors its subgraphs capture, each once.
func nodeInputs(n *onnxpb.NodeProto) []string {
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, in := range n.GetInput() {
		add(in)
	}
	for _, a := range n.GetAttribute() {
		for _, sg := range subgraphs(a) {
			for _, c := range captures(sg) {
				add(c)
			}
		}
	}
	return out
}

func subgraphs(a *onnxpb.AttributeProto) []*onnxpb.GraphProto {
	var gs []*onnxpb.GraphProto
	if a.G != nil {
		gs = append(gs, a.G)
	}
	return append(gs, a.GetGraphs()...)
}

// captures lists the names a subgraph reads without defining them: its
// references to the enclosing scopes, nested subgraphs included.
func captures(g *onnxpb.GraphProto) []string {
	defined := map[string]bool{}
	for _, vi := range g.GetInput() {
		defined[vi.GetName()] = true
	}
	for _, t := range g.GetInitializer() {
		defined[t.GetName()] = true
	}
	for _, t := range g.GetSparseInitializer() {
		defined[t.GetValues().GetName()] = true
	}
	for _, n := range g.GetNode() {
		for _, o := range n.GetOutput() {
			defined[o] = true
		}
	}
	seen := map[string]bool{}
	var out []string
	for _, n := range g.GetNode() {
		for _, in := range nodeInputs(n) {
			if !defined[in] && !seen[in] {
				seen[in] = true
				out = append(out, in)
			}
		}
	}
	for _, o := range g.GetOutput() {
		if name := o.GetName(); !defined[name] && !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	return out
}

func nodeLabel(n *onnxpb.NodeProto, fileIndex int) string {
	if n.GetName() != "" {
		return n.GetName()
	}
	return fmt.Sprintf("%s_%d", n.GetOpType(), fileIndex)
}

// Proto returns the underlying message. Callers must not modify it.
func (m *Model) Proto() *onnxpb.ModelProto { return m.proto }

// Bytes serialises the model. Unknown fields are written back unchanged.
func (m *Model) Bytes() ([]byte, error) {
	b, err := proto.Marshal(m.proto)
	if err != nil {
		return nil, fmt.Errorf("serialise model: %w", err)
	}
	return b, nil
}

// Save writes the model to path atomically: a temporary file in the same
// folder renamed into place, so a failure leaves nothing half-written.
func (m *Model) Save(path string) error {
	b, err := m.Bytes()
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, b)
}

// WriteFileAtomic writes data to a temporary file beside path and renames it
// into place, so readers never see a partial file. The file gets mode 0644
// (set explicitly, so the umask does not narrow it further).
func WriteFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	// CreateTemp makes the file owner-only; results are meant to be shared
	// like any other file the user creates.
	perr := f.Chmod(0o644)
	cerr := f.Close()
	if err := errors.Join(werr, perr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Nodes returns the compute nodes in canonical order. Node i has ID i.
func (m *Model) Nodes() []Node { return m.nodes }

// DeadNodes returns how many nodes of the file reach no graph output; they
// are left out of both halves.
func (m *Model) DeadNodes() int { return m.dead }

// Inputs returns the names of the real graph inputs, leaving out graph
// inputs that are initialisers (IR < 4 lists every weight as an input).
func (m *Model) Inputs() []string { return m.inputs }

// Outputs returns the names of the graph outputs.
func (m *Model) Outputs() []string { return m.outs }

// IsInitializer reports whether name is an initialiser of the main graph.
func (m *Model) IsInitializer(name string) bool { return m.inits[name] }

// Producer returns the ID of the compute node producing the tensor, or -1
// for graph inputs, initialisers and constants.
func (m *Model) Producer(name string) int {
	if id, ok := m.prod[name]; ok {
		return id
	}
	return -1
}

// Consumers returns the IDs of the compute nodes reading the tensor, in
// canonical order.
func (m *Model) Consumers(name string) []int { return m.cons[name] }

// TensorInfo describes a tensor's type as far as the model declares it.
type TensorInfo struct {
	Name  string
	DType tensor.DType
	// Shape has -1 for a dimension that is unknown or symbolic; DimParams
	// holds the symbol (e.g. "batch") at the same index, or "".
	Shape     tensor.Shape
	DimParams []string
	// Bytes is the tensor's size: from the shape when it is static, else
	// from the shape a probe run measured (SetTensorType), else -1.
	Bytes int64
}

// Tensor returns the declared type of a tensor from the graph's inputs,
// outputs and value_info; ok is false when the model does not declare it.
func (m *Model) Tensor(name string) (TensorInfo, bool) {
	vi, ok := m.info[name]
	if !ok {
		if t := m.initializer(name); t != nil {
			shape := tensor.Shape(append([]int64(nil), t.GetDims()...))
			d := tensor.DType(t.GetDataType())
			return TensorInfo{Name: name, DType: d, Shape: shape, DimParams: make([]string, len(shape)), Bytes: tensor.ByteSize(d, shape)}, true
		}
		return TensorInfo{Name: name, Bytes: -1}, false
	}
	ti, ok := infoFromProto(vi)
	if ok && ti.Bytes < 0 {
		if s, measured := m.sample[name]; measured {
			ti.Bytes = tensor.ByteSize(ti.DType, s)
		}
	}
	return ti, ok
}

func (m *Model) initializer(name string) *onnxpb.TensorProto { return m.initp[name] }

func infoFromProto(vi *onnxpb.ValueInfoProto) (TensorInfo, bool) {
	tt := vi.GetType().GetTensorType()
	if tt == nil || tt.GetElemType() == 0 {
		return TensorInfo{Name: vi.GetName(), Bytes: -1}, false
	}
	ti := TensorInfo{Name: vi.GetName(), DType: tensor.DType(tt.GetElemType()), Bytes: -1}
	if tt.Shape == nil {
		// Unknown rank: a shape nobody can size.
		return ti, true
	}
	for _, d := range tt.GetShape().GetDim() {
		if v, ok := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); ok && v.DimValue >= 0 {
			ti.Shape = append(ti.Shape, v.DimValue)
			ti.DimParams = append(ti.DimParams, "")
		} else {
			ti.Shape = append(ti.Shape, -1)
			ti.DimParams = append(ti.DimParams, d.GetDimParam())
		}
	}
	if ti.Shape == nil {
		ti.Shape = tensor.Shape{}
	}
	ti.Bytes = tensor.ByteSize(ti.DType, ti.Shape)
	return ti, true
}

// SetTensorType records what a probe run measured of a tensor: its element
// type, its shape with -1 for the dimensions that vary with the inputs'
// dynamic dimensions, and the concrete shape seen (sample), which sizes the
// tensor in cut tables. A declared type that agrees with the measurement is
// kept (with its symbolic dimension names); a missing one, or one the
// measurement contradicts (some exporters write wrong value_info), is
// replaced, as is one that fixes a dimension the measurement found dynamic
// (exporters write value_info for the size they traced at). Graph inputs
// and outputs are never changed. It must not be called
// while other goroutines use the model.
func (m *Model) SetTensorType(name string, d tensor.DType, shape, sample tensor.Shape) {
	m.sample[name] = sample.Clone()
	old, declared := m.info[name]
	if declared {
		if ti, known := infoFromProto(old); known && ti.DType == d && ti.Shape.Accepts(sample) && !fixesDynamic(ti.Shape, shape) {
			return
		}
		if m.isInputOrOutput(name) {
			return
		}
	}
	vi := valueInfo(name, d, shape, nil)
	m.info[name] = vi
	g := m.proto.Graph
	for i, v := range g.ValueInfo {
		if v == old {
			g.ValueInfo[i] = vi
			return
		}
	}
	g.ValueInfo = append(g.ValueInfo, vi)
}

// fixesDynamic reports whether declared fixes a dimension that measured
// found dynamic (-1).
func fixesDynamic(declared, measured tensor.Shape) bool {
	for j := range measured {
		if measured[j] < 0 && j < len(declared) && declared[j] >= 0 {
			return true
		}
	}
	return false
}

func (m *Model) isInputOrOutput(name string) bool {
	for _, vi := range m.proto.GetGraph().GetInput() {
		if vi.GetName() == name {
			return true
		}
	}
	return slices.Contains(m.outs, name)
}

// UntypedTensors returns the tensors that flow between compute nodes (or
// from them to the graph outputs) whose type the model does not declare,
// in canonical order. These are the ones a probe run must measure before
// every cut can be sized.
func (m *Model) UntypedTensors() []string {
	var out []string
	for _, n := range m.nodes {
		for _, o := range n.Outputs {
			if _, ok := m.Tensor(o); !ok {
				out = append(out, o)
			}
		}
	}
	return out
}

// ProbePrefix starts the names of the outputs ProbeModel adds: output
// ProbePrefix+t is tensor t with a leading dimension of 1.
const ProbePrefix = "tracr.probe/"

// ProbeModel returns the bytes of a copy of the model that also outputs the
// named tensors, each through an Unsqueeze on axis 0 as output ProbePrefix+t
// and left untyped so that the runtime infers it. The extra axis guarantees
// rank >= 1 (a scalar comes back as [1]), which keeps runtimes that cannot
// return scalars of unknown rank working; callers drop the leading 1. It is
// how a probe run measures intermediate tensors.
func (m *Model) ProbeModel(names []string) ([]byte, error) {
	src := m.proto.GetGraph()
	g := shallowGraph(src)
	g.Node = append([]*onnxpb.NodeProto(nil), src.GetNode()...)
	g.Initializer = src.GetInitializer()
	g.SparseInitializer = src.GetSparseInitializer()
	g.Input = src.GetInput()
	g.QuantizationAnnotation = src.GetQuantizationAnnotation()
	g.Output = src.GetOutput()
	probed := map[string]bool{}
	axes := ProbePrefix + "axes"
	attrAxes := m.opset("") < 13
	if !attrAxes {
		g.Initializer = append(append([]*onnxpb.TensorProto(nil), g.Initializer...), &onnxpb.TensorProto{
			Name: proto.String(axes), Dims: []int64{1}, DataType: proto.Int32(int32(tensor.Int64)), Int64Data: []int64{0}})
	}
	for _, n := range names {
		if probed[n] {
			continue
		}
		probed[n] = true
		node := &onnxpb.NodeProto{Name: proto.String(ProbePrefix + n), OpType: proto.String("Unsqueeze"), Input: []string{n}, Output: []string{ProbePrefix + n}}
		if attrAxes {
			node.Attribute = []*onnxpb.AttributeProto{{Name: proto.String("axes"), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: []int64{0}}}
		} else {
			node.Input = append(node.Input, axes)
		}
		g.Node = append(g.Node, node)
		g.Output = append(g.Output, &onnxpb.ValueInfoProto{Name: proto.String(ProbePrefix + n)})
	}
	// The runtime must infer the probed tensors afresh: a wrong value_info
	// entry would make it allocate the wrong shape.
	for _, vi := range src.GetValueInfo() {
		if !probed[vi.GetName()] {
			g.ValueInfo = append(g.ValueInfo, vi)
		}
	}
	b, err := proto.Marshal(shallowModel(m.proto, g))
	if err != nil {
		return nil, fmt.Errorf("serialise probe model: %w", err)
	}
	return b, nil
}

// opset returns the version the model imports for a domain ("" is ONNX's
// default domain), or 0.
func (m *Model) opset(domain string) int64 {
	for _, o := range m.proto.GetOpsetImport() {
		if o.GetDomain() == domain || (domain == "" && o.GetDomain() == "ai.onnx") {
			return o.GetVersion()
		}
	}
	return 0
}

// shallowModel copies the model's top-level fields (unknown ones included:
// local functions, training info) around a new graph, sharing everything
// else with the original.
func shallowModel(mp *onnxpb.ModelProto, g *onnxpb.GraphProto) *onnxpb.ModelProto {
	out := &onnxpb.ModelProto{
		IrVersion:       mp.IrVersion,
		ProducerName:    mp.ProducerName,
		ProducerVersion: mp.ProducerVersion,
		Domain:          mp.Domain,
		ModelVersion:    mp.ModelVersion,
		DocString:       mp.DocString,
		Graph:           g,
		OpsetImport:     mp.OpsetImport,
		MetadataProps:   mp.MetadataProps,
	}
	out.ProtoReflect().SetUnknown(mp.ProtoReflect().GetUnknown())
	return out
}

// shallowGraph copies a graph's name, docs, metadata and unknown fields, but
// none of its lists.
func shallowGraph(g *onnxpb.GraphProto) *onnxpb.GraphProto {
	out := &onnxpb.GraphProto{Name: g.Name, DocString: g.DocString, MetadataProps: g.MetadataProps}
	out.ProtoReflect().SetUnknown(g.ProtoReflect().GetUnknown())
	return out
}

func valueInfo(name string, d tensor.DType, shape tensor.Shape, params []string) *onnxpb.ValueInfoProto {
	sp := &onnxpb.TensorShapeProto{}
	for i, v := range shape {
		dim := &onnxpb.TensorShapeProto_Dimension{}
		switch {
		case v >= 0:
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: v}
		case i < len(params) && params[i] != "":
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: params[i]}
		}
		sp.Dim = append(sp.Dim, dim)
	}
	return &onnxpb.ValueInfoProto{
		Name: proto.String(name),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: proto.Int32(int32(d)),
			Shape:    sp,
		}}},
	}
}

// intHeap is a min-heap of node indices for the topological sort.
type intHeap struct{ a []int }

func (h *intHeap) len() int { return len(h.a) }

func (h *intHeap) push(v int) {
	h.a = append(h.a, v)
	for i := len(h.a) - 1; i > 0; {
		p := (i - 1) / 2
		if h.a[p] <= h.a[i] {
			break
		}
		h.a[p], h.a[i] = h.a[i], h.a[p]
		i = p
	}
}

func (h *intHeap) pop() int {
	top := h.a[0]
	last := len(h.a) - 1
	h.a[0] = h.a[last]
	h.a = h.a[:last]
	for i := 0; ; {
		l, r, s := 2*i+1, 2*i+2, i
		if l < len(h.a) && h.a[l] < h.a[s] {
			s = l
		}
		if r < len(h.a) && h.a[r] < h.a[s] {
			s = r
		}
		if s == i {
			break
		}
		h.a[i], h.a[s] = h.a[s], h.a[i]
		i = s
	}
	return top
}
