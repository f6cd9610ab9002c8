package wire

import (
	"bytes"
	"encoding/json"
)

// ErrorEnvelope is the upstream's error body, {"error":{...}}, which its
// clients (the OpenAI SDKs among them) know how to read. The gateway
// writes its own errors in the same shape.
type ErrorEnvelope struct {
	// Error is the error itself.
	Error ErrorObject `json:"error"`
}

// ErrorObject is the inside of an ErrorEnvelope. Param and Code are null
// when nil, as the upstream sends them.
type ErrorObject struct {
	// Message is meant for people.
	Message string `json:"message"`
	// Type is the error's class, for example "invalid_request_error".
	Type string `json:"type"`
	// Param names the request parameter at fault; null when nil.
	Param *string `json:"param"`
	// Code is the machine-readable code, for example "batch_not_found";
	// null when nil.
	Code *string `json:"code"`
}

// DecodeError reads the error envelope of an upstream error body
// tolerantly: {"error":"text"} gives just a message, numbers and booleans
// are kept as their text, and objects, arrays and nulls give "". ok is
// false when body holds no envelope at all (not JSON, no "error" key). The
// values are as the upstream sent them: callers sanitise them.
func DecodeError(body []byte) (message, typ, param, code string, ok bool) {
	var env struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &env) != nil {
		return "", "", "", "", false
	}
	raw := bytes.TrimSpace(env.Error)
	if len(raw) == 0 {
		return "", "", "", "", false
	}
	switch raw[0] {
	case '"':
		message, _ = scalarString(raw)
		return message, "", "", "", true
	case '{':
		var f struct {
			Message json.RawMessage `json:"message"`
			Type    json.RawMessage `json:"type"`
			Param   json.RawMessage `json:"param"`
			Code    json.RawMessage `json:"code"`
		}
		if json.Unmarshal(raw, &f) != nil {
			return "", "", "", "", false
		}
		message, _ = scalarString(f.Message)
		typ, _ = scalarString(f.Type)
		param, _ = scalarString(f.Param)
		code, _ = scalarString(f.Code)
		return message, typ, param, code, true
	}
	return "", "", "", "", false
}
