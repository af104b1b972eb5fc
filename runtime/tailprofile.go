package runtime

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"tracr/engine"
	"tracr/profiler"
	"tracr/transport"
)

// profile answers a MsgProfileReq with the server's Profile (cached by the
// profiler per model, provider, threads and machine).
func (h *TailHandler) profile(ctx context.Context, payload []byte) (transport.Frame, error) {
	var req transport.ProfileRequest
	if err := json.Unmarshal(payload, &req); err != nil {
		return transport.Frame{}, fmt.Errorf("profile request: %w", err)
	}
	raw, err := hex.DecodeString(req.ModelHash)
	if err != nil || len(raw) != 32 {
		return transport.Frame{}, fmt.Errorf("profile request: model hash %q is not a hex SHA-256", req.ModelHash)
	}
	cm := h.models.get([32]byte(raw))
	if cm == nil {
		return transport.Frame{}, transport.ErrModelMissing
	}
	threads := req.Threads
	if threads == 0 {
		threads = h.opts.Engine.Threads
	}
	shapes := engine.InputShapes(req.InputShapes)
	cm.useShapes(shapes)
	opts := profiler.Options{Provider: h.opts.Engine.Provider, Threads: threads, Repeats: req.Repeats, Cuts: req.Cuts, Fresh: req.Fresh, InputShapes: shapes}
	p, _, err := profiler.Cached(ctx, h.opts.ProfileDir, cm.data, "edge upload "+req.ModelHash[:12], opts)
	if err != nil {
		return transport.Frame{}, fmt.Errorf("profile: %w", err)
	}
	b, err := p.JSON()
	if err != nil {
		return transport.Frame{}, err
	}
	return transport.Frame{Type: transport.MsgProfile, Payload: b}, nil
}

// ServerProfile asks the server behind c to profile the model on its own
// machine (uploading the model first if the server lacks it) and decodes
// the Profile it answers with.
func ServerProfile(ctx context.Context, c *transport.Client, model []byte, req transport.ProfileRequest) (*profiler.Profile, error) {
	b, err := c.Profile(ctx, model, req)
	if err != nil {
		return nil, err
	}
	p, err := profiler.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("server profile: %w", err)
	}
	return p, nil
}
