package simulator

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// apiError is the upstream's error object; status is the HTTP status it is
// sent with.
type apiError struct {
	status  int
	Message string
	Type    string
	Param   string // "" is sent as null
	Code    string
}

// envelope is the upstream's error body. param is null when empty; code is
// always a string.
type envelope struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    string  `json:"code"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, e *apiError) {
	var env envelope
	env.Error.Message = e.Message
	env.Error.Type = e.Type
	if e.Param != "" {
		env.Error.Param = &e.Param
	}
	env.Error.Code = e.Code
	writeJSON(w, e.status, &env)
}

func writeNotFound(w http.ResponseWriter, id string) {
	writeError(w, &apiError{
		status:  http.StatusNotFound,
		Message: "No batch found with id '" + id + "'.",
		Type:    "not_found_error",
		Code:    "not_found",
	})
}

func writeMethodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, &apiError{
		status:  http.StatusMethodNotAllowed,
		Message: "Method not allowed; allowed: " + allow + ".",
		Type:    "invalid_request_error",
		Code:    "method_not_allowed",
	})
}

func writeInternal(w http.ResponseWriter, err error) {
	writeError(w, &apiError{
		status:  http.StatusInternalServerError,
		Message: "simulator: " + err.Error(),
		Type:    "api_error",
		Code:    "internal_error",
	})
}

// writeBatch writes v as a 200 answer.
func writeBatch(w http.ResponseWriter, v view) {
	data, err := encodeBatch(&v.b, v.extra)
	if err != nil {
		writeInternal(w, err)
		return
	}
	writeRaw(w, http.StatusOK, data)
}

// writeJSON writes v as JSON with the given status. v is one of the
// simulator's own types, which always marshal.
func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		writeInternal(w, err)
		return
	}
	writeRaw(w, status, data)
}

func writeRaw(w http.ResponseWriter, status int, data []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(status)
	_, _ = w.Write(data)
}
