package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	batchv1 "github.com/batchgate/batchgate/gen/batch/v1"
)

func TestOwnershipKeyMode(t *testing.T) {
	t.Parallel()
	const alice, bob, ops, reader = "Bearer tok-alice-0123456789", "Bearer tok-bob-0123456789", "Bearer tok-ops-0123456789", "Bearer tok-reader-0123456789"
	clk := newClock()
	e := lcStart(t, clk, keyMode(writeTokens(t, "",
		"alice tok-alice-0123456789", "bob tok-bob-0123456789", "ops tok-ops-0123456789 read,all", "reader tok-reader-0123456789 read")))
	as := func(authz string) context.Context { return withAuthz(t.Context(), authz) }
	files := batchv1.NewFileServiceClient(e.Conn)
	input := lcInput(lcCustomIDs...)

	// Five batches each, interleaved, more than one page of bob's.
	made := map[string][]string{}
	fileOf := map[string]string{}
	for _, who := range []string{alice, bob} {
		fileOf[who] = lcUpload(as(who), t, e, "input.jsonl", input, 1<<20).GetId()
	}
	for range 5 {
		for _, who := range []string{alice, bob} {
			clk.Advance(time.Second)
			made[who] = append(made[who], lcCreate(as(who), t, e, fileOf[who]).GetId())
		}
	}
	aBatch, aFile := made[alice][0], fileOf[alice]

	t.Run("bob cannot reach alice's", func(t *testing.T) {
		ctx := as(bob)
		_, err := e.Client.GetBatch(ctx, &batchv1.GetBatchRequest{BatchId: aBatch})
		lcCode(t, "GetBatch", err, codes.NotFound)
		if w, err := e.Client.WatchBatch(ctx, &batchv1.WatchBatchRequest{BatchId: aBatch}); err == nil {
			_, err = w.Recv()
			lcCode(t, "WatchBatch", err, codes.NotFound)
		}
		_, err = e.Client.CancelBatch(ctx, &batchv1.CancelBatchRequest{BatchId: aBatch})
		lcCode(t, "CancelBatch", err, codes.NotFound)
		_, err = lcResults(ctx, e, &batchv1.StreamBatchResultsRequest{BatchId: aBatch})
		lcCode(t, "StreamBatchResults", err, codes.NotFound)
		_, err = files.GetFile(ctx, &batchv1.GetFileRequest{FileId: aFile})
		lcCode(t, "GetFile", err, codes.NotFound)
		_, err = lcContent(ctx, e, aFile)
		lcCode(t, "GetFileContent", err, codes.NotFound)
		_, err = files.DeleteFile(ctx, &batchv1.DeleteFileRequest{FileId: aFile})
		lcCode(t, "DeleteFile", err, codes.NotFound)
		for _, r := range []struct{ method, path string }{
			{http.MethodGet, "/v1/batches/" + aBatch},
			{http.MethodGet, "/v1/batches/" + aBatch + "/watch"},
			{http.MethodPost, "/v1/batches/" + aBatch + "/cancel"},
			{http.MethodGet, "/v1/batches/" + aBatch + "/results"},
			{http.MethodGet, "/v1/files/" + aFile},
			{http.MethodGet, "/v1/files/" + aFile + "/content"},
			{http.MethodDelete, "/v1/files/" + aFile},
		} {
			resp, data := restRequest(t, e, r.method, r.path, bob, nil, nil)
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s %s as bob: %d %s, want 404", r.method, r.path, resp.StatusCode, data)
			}
		}
		if _, ok := e.Sim.FileContent(aFile); !ok {
			t.Fatal("bob deleted alice's file")
		}
		if b, err := e.Client.GetBatch(as(alice), &batchv1.GetBatchRequest{BatchId: aBatch}); err != nil ||
			b.GetBatch().GetStatus() == batchv1.BatchStatus_BATCH_STATUS_CANCELLING {
			t.Fatalf("alice's batch after bob's calls: %v %v", b, err)
		}
	})

	t.Run("lists are per caller", func(t *testing.T) {
		for _, who := range []string{alice, bob} {
			got := lcIDs(lcListAll(as(who), t, e, 2))
			want := slices.Clone(made[who])
			slices.Reverse(want)
			if !slices.Equal(got, want) {
				t.Errorf("%s lists %v, want %v", who, got, want)
			}
			resp, data := restRequest(t, e, http.MethodGet, "/v1/batches?limit=2", who, nil, nil)
			var page struct {
				Data []struct {
					ID string `json:"id"`
				} `json:"data"`
				HasMore bool `json:"has_more"`
			}
			if err := json.Unmarshal(data, &page); err != nil || resp.StatusCode != http.StatusOK ||
				len(page.Data) != 2 || page.Data[0].ID != want[0] || !page.HasMore {
				t.Errorf("REST first page of %s: %d %s", who, resp.StatusCode, data)
			}
			fl, err := files.ListFiles(as(who), &batchv1.ListFilesRequest{})
			if err != nil {
				t.Fatalf("ListFiles: %v", err)
			}
			for _, f := range fl.GetFiles() {
				for other, id := range fileOf {
					if other != who && f.GetId() == id {
						t.Errorf("%s lists %s's file %s", who, other, id)
					}
				}
			}
			if !slices.ContainsFunc(fl.GetFiles(), func(f *batchv1.File) bool { return f.GetId() == fileOf[who] }) {
				t.Errorf("%s does not list its own file", who)
			}
		}
	})

	t.Run("scopes", func(t *testing.T) {
		if _, err := e.Client.GetBatch(as(ops), &batchv1.GetBatchRequest{BatchId: aBatch}); err != nil {
			t.Errorf("ops GetBatch: %v", err)
		}
		if resp, data := restRequest(t, e, http.MethodGet, "/v1/batches/"+aBatch, ops, nil, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("ops REST GetBatch: %d %s", resp.StatusCode, data)
		}
		_, err := e.Client.CancelBatch(as(ops), &batchv1.CancelBatchRequest{BatchId: aBatch})
		lcCode(t, "ops CancelBatch", err, codes.PermissionDenied)
		_, err = e.Client.CreateBatch(as(ops), &batchv1.CreateBatchRequest{InputFileId: aFile, Endpoint: lcEndpoint, CompletionWindow: "24h"})
		lcCode(t, "ops CreateBatch", err, codes.PermissionDenied)
		if resp, data := restRequest(t, e, http.MethodPost, "/v1/batches/"+aBatch+"/cancel", ops, nil, nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("ops REST cancel: %d %s, want 403", resp.StatusCode, data)
		}
		body, _ := json.Marshal(lcCreateBody(aFile))
		if resp, data := restRequest(t, e, http.MethodPost, "/v1/batches", ops, http.Header{"Content-Type": {"application/json"}}, bytes.NewReader(body)); resp.StatusCode != http.StatusForbidden {
			t.Errorf("ops REST create: %d %s, want 403", resp.StatusCode, data)
		}
		_, err = lcTryUpload(as(reader), e, "r.jsonl", "batch", input, 1<<20)
		lcCode(t, "reader UploadFile", err, codes.PermissionDenied)
		if code, m := lcRESTUpload(t, e, reader, false, input); code != http.StatusForbidden {
			t.Errorf("reader REST upload: %d %v, want 403", code, m)
		}
		_, err = e.Client.CreateBatch(as(alice), &batchv1.CreateBatchRequest{InputFileId: fileOf[bob], Endpoint: lcEndpoint, CompletionWindow: "24h"})
		lcCode(t, "alice creating from bob's file", err, codes.InvalidArgument)
		body, _ = json.Marshal(lcCreateBody(fileOf[bob]))
		if resp, data := restRequest(t, e, http.MethodPost, "/v1/batches", alice, http.Header{"Content-Type": {"application/json"}}, bytes.NewReader(body)); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("alice REST create from bob's file: %d %s, want 400", resp.StatusCode, data)
		}
		if n := e.Sim.Creates(); n != 10 {
			t.Errorf("the upstream made %d batches, want the 10 allowed", n)
		}
	})
}
