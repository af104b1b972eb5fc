package transport

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"tracr/tensor"
)

// ProfileRequest asks the server to profile a model it holds (sent before
// with PutModel) on its own machine: the MsgProfileReq payload, as JSON.
type ProfileRequest struct {
	ModelHash string `json:"model_hash"` // hex SHA-256
	// Threads is the intra-op threads to profile with; 0 means those the
	// server runs its tails with, so the profile prices the tails the
	// server will actually run.
	Threads int   `json:"threads"`
	Repeats int   `json:"repeats,omitempty"`
	Cuts    []int `json:"cuts,omitempty"`
	// Fresh asks for a new measurement even when one is cached.
	Fresh bool `json:"fresh,omitempty"`
	// InputShapes sizes the model's dynamic inputs, by input name, as the
	// edge prepared and profiled it (engine.InputShapes); the server
	// profiles at them and cuts its tails from the model prepared at them.
	InputShapes map[string]tensor.Shape `json:"input_shapes,omitempty"`
}

// Profile asks the server to profile the model (uploading it first if the
// server lacks it) and returns the server's answer: a profile as JSON,
// which transport carries without reading (runtime.ServerProfile decodes
// it).
func (c *Client) Profile(ctx context.Context, model []byte, req ProfileRequest) ([]byte, error) {
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
	return r.Payload, nil
}
