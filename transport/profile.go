package transport

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"tracr/profiler"
)

// ProfileRequest asks the server to profile a model it holds (sent before
// with PutModel) on its own machine: the MsgProfileReq payload, as JSON.
type ProfileRequest struct {
	ModelHash string `json:"model_hash"` // hex SHA-256
	// Threads is the intra-op threads to profile with; 0 means those the
	// server runs its tails with (TailOptions.Engine), so the profile
	// prices the tails the server will actually run.
	Threads int   `json:"threads"`
	Repeats int   `json:"repeats,omitempty"`
	Cuts    []int `json:"cuts,omitempty"`
	// Fresh asks for a new measurement even when one is cached.
	Fresh bool `json:"fresh,omitempty"`
}

// profile answers a MsgProfileReq with the server's Profile (cached by the
// profiler per model, provider, threads and machine).
func (h *TailHandler) profile(ctx context.Context, payload []byte) (Frame, error) {
	var req ProfileRequest
	if err := json.Unmarshal(payload, &req); err != nil {
		return Frame{}, fmt.Errorf("profile request: %w", err)
	}
	raw, err := hex.DecodeString(req.ModelHash)
	if err != nil || len(raw) != 32 {
		return Frame{}, fmt.Errorf("profile request: model hash %q is not a hex SHA-256", req.ModelHash)
	}
	cm := h.models.get([32]byte(raw))
	if cm == nil {
		return Frame{}, ErrModelMissing
	}
	threads := req.Threads
	if threads == 0 {
		threads = h.opts.Engine.Threads
	}
	opts := profiler.Options{Provider: h.opts.Engine.Provider, Threads: threads, Repeats: req.Repeats, Cuts: req.Cuts, Fresh: req.Fresh}
	p, _, err := profiler.Cached(ctx, h.opts.ProfileDir, cm.data, "edge upload "+req.ModelHash[:12], opts)
	if err != nil {
		return Frame{}, fmt.Errorf("profile: %w", err)
	}
	b, err := p.JSON()
	if err != nil {
		return Frame{}, err
	}
	return Frame{Type: MsgProfile, Payload: b}, nil
}

// Profile asks the server to profile the model (uploading it first if the
// server lacks it) and returns the server's Profile.
func (c *Client) Profile(ctx context.Context, model []byte, req ProfileRequest) (*profiler.Profile, error) {
	hash, err := c.EnsureModel(ctx, model)
	if err != nil {
		return nil, fmt.Errorf("server profile: %w", err)
	}
	req.ModelHash = hex.EncodeToString(hash[:])
	payload, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	r, err := c.Do(ctx, Frame{Type: MsgProfileReq, Payload: payload})
	if err == nil {
		err = expect(r, MsgProfile)
	}
	if err != nil {
		return nil, fmt.Errorf("server profile: %w", err)
	}
	p, err := profiler.Parse(r.Payload)
	if err != nil {
		return nil, fmt.Errorf("server profile: %w", err)
	}
	return p, nil
}
