package simulator

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/batchgate/batchgate/internal/wire"
)

// MaxInputLines is the most requests an input file may hold, the
// upstream's limit; a file with more fails validation.
const MaxInputLines = 50000

// FailPrefix marks the requests of an input file that fail: a request whose
// custom_id begins with it is answered 400 in the batch's error file
// instead of 200 in its output file.
const FailPrefix = "fail"

// maxBatchErrors caps errors.data of a batch that failed validation.
const maxBatchErrors = 100

// inputLine is what the simulator keeps of one request of an input file.
type inputLine struct {
	customID string
	model    string
}

// readInput reads a batch input file: JSONL, one wire.InputLine a line,
// whose url must be endpoint; blank lines are ignored. It returns the
// requests, or else the errors that fail the batch's validation (at most
// maxBatchErrors, each naming its 1-based line).
func readInput(data []byte, endpoint string) ([]inputLine, []*wire.BatchError) {
	var (
		lines []inputLine
		errs  []*wire.BatchError
		seen  = make(map[string]struct{})
	)
	fail := func(line int, code, param, msg string) {
		e := &wire.BatchError{Code: wire.Text(code), Message: "Line " + strconv.Itoa(line) + ": " + msg, Line: ptr(wire.Int(line))}
		if param != "" {
			e.Param = ptr(param)
		}
		errs = append(errs, e)
	}
	n := 0 // requests seen, valid or not
	for lineNo := 1; len(data) > 0 && len(errs) < maxBatchErrors; lineNo++ {
		var raw []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			raw, data = data[:i], data[i+1:]
		} else {
			raw, data = data, nil
		}
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 {
			continue
		}
		if n++; n > MaxInputLines {
			errs = append(errs, &wire.BatchError{
				Code:    "too_many_requests",
				Message: "The input file holds more than " + strconv.Itoa(MaxInputLines) + " requests.",
				Line:    ptr(wire.Int(lineNo)),
			})
			break
		}
		if !json.Valid(raw) {
			fail(lineNo, "invalid_json_line", "", "not valid JSON.")
			continue
		}
		var in wire.InputLine
		if raw[0] != '{' || json.Unmarshal(raw, &in) != nil {
			fail(lineNo, "invalid_request", "", "not a request object {custom_id, method, url, body}.")
			continue
		}
		var body struct {
			Model string `json:"model"`
		}
		switch b := bytes.TrimSpace(in.Body); {
		case in.CustomID == "":
			fail(lineNo, "missing_required_parameter", "custom_id", "missing 'custom_id'.")
		case in.Method != http.MethodPost:
			fail(lineNo, "invalid_value", "method", "'method' must be 'POST'.")
		case in.URL != endpoint:
			fail(lineNo, "invalid_value", "url", "'url' must be the batch's endpoint, '"+endpoint+"'.")
		case len(b) == 0 || string(b) == "null":
			fail(lineNo, "missing_required_parameter", "body", "missing 'body'.")
		case b[0] != '{' || json.Unmarshal(b, &body) != nil:
			fail(lineNo, "invalid_value", "body", "'body' must be an object with a string 'model'.")
		default:
			if _, dup := seen[in.CustomID]; dup {
				fail(lineNo, "duplicate_custom_id", "custom_id", "'custom_id' is not unique in the file.")
				continue
			}
			seen[in.CustomID] = struct{}{}
			if len(errs) == 0 {
				lines = append(lines, inputLine{customID: in.CustomID, model: body.Model})
			}
		}
	}
	if len(errs) == 0 && len(lines) == 0 {
		errs = append(errs, &wire.BatchError{Code: "empty_file", Message: "The input file holds no requests."})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return lines, nil
}

// fails reports whether the request with this custom_id fails.
func fails(customID string) bool { return strings.HasPrefix(customID, FailPrefix) }

// chatCompletion is the canned body of a successful request's response,
// an OpenAI chat.completion object.
type chatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   chatUsage    `json:"usage"`
}

type chatChoice struct {
	Index        int         `json:"index"`
	Message      chatMessage `json:"message"`
	FinishReason string      `json:"finish_reason"`
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// resultIDs are the ids of one result line: the line's, its request's and
// its chat completion's.
type resultIDs struct{ line, request, completion string }

// newResultIDs returns fresh random ids.
func newResultIDs() resultIDs {
	return resultIDs{line: "batch_req_" + randomHex(12), request: "req_" + randomHex(16), completion: "chatcmpl-" + randomHex(12)}
}

// detResultIDs returns ids derived from seed and n, the same every time.
func detResultIDs(seed string, n int) resultIDs {
	h := sha256.Sum256([]byte(seed + "/" + strconv.Itoa(n)))
	x := hex.EncodeToString(h[:])
	return resultIDs{line: "batch_req_" + x[:24], request: "req_" + x[24:56], completion: "chatcmpl-" + x[40:64]}
}

// appendResult appends the result line of request n (1-based) of a batch,
// run at created (Unix seconds), and a newline: a 200 answer with a canned
// chat completion, or when failed a 400 answer carrying the upstream's
// error envelope.
func appendResult(dst []byte, in inputLine, n int, created int64, ids resultIDs, failed bool) []byte {
	resp := &wire.ResultResponse{StatusCode: 200, RequestID: ids.request}
	var body any
	if failed {
		resp.StatusCode = 400
		code := "simulated_failure"
		var env wire.ErrorEnvelope
		env.Error.Message = "Simulated failure: the custom_id begins with '" + FailPrefix + "'."
		env.Error.Type = "invalid_request_error"
		env.Error.Code = &code
		body = &env
	} else {
		content := "Simulated answer to request " + strconv.Itoa(n) + "."
		body = &chatCompletion{
			ID: ids.completion, Object: "chat.completion", Created: created, Model: in.model,
			Choices: []chatChoice{{Message: chatMessage{Role: "assistant", Content: content}, FinishReason: "stop"}},
			Usage:   chatUsage{PromptTokens: 12, CompletionTokens: 6, TotalTokens: 18},
		}
	}
	var err error
	if resp.Body, err = json.Marshal(body); err != nil {
		panic(err) // the simulator's own types always marshal
	}
	line, err := json.Marshal(&wire.ResultLine{ID: ids.line, CustomID: in.customID, Response: resp})
	if err != nil {
		panic(err)
	}
	return append(append(dst, line...), '\n')
}
