package simulator

import (
	"reflect"
	"testing"

	"github.com/batchgate/batchgate/internal/wire"
)

// fill sets every field reachable from v to a non-zero value: pointers to
// new values, maps and slices to one element.
func fill(t *testing.T, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			fill(t, v.Field(i))
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(t, v.Index(0))
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(t, k)
		fill(t, e)
		v.SetMapIndex(k, e)
	case reflect.String:
		v.SetString("x")
	case reflect.Int64:
		v.SetInt(1)
	default:
		t.Fatalf("fill: unexpected kind %s in %s", v.Kind(), v.Type())
	}
}

// shared reports the path of the first pointer, map or slice that a and b
// share, or "".
func shared(a, b reflect.Value, path string) string {
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return ""
		}
		if a.Pointer() == b.Pointer() {
			return path
		}
		return shared(a.Elem(), b.Elem(), path)
	case reflect.Struct:
		for i := range a.NumField() {
			if p := shared(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name); p != "" {
				return p
			}
		}
	case reflect.Slice:
		if a.Len() > 0 && b.Len() > 0 && a.Pointer() == b.Pointer() {
			return path
		}
		for i := range min(a.Len(), b.Len()) {
			if p := shared(a.Index(i), b.Index(i), path+"[]"); p != "" {
				return p
			}
		}
	case reflect.Map:
		if !a.IsNil() && !b.IsNil() && a.Pointer() == b.Pointer() {
			return path
		}
	}
	return ""
}

// TestCloneBatch: cloneBatch copies every field of wire.Batch, however deep,
// so that a batch handed to Put or returned by Create shares nothing with
// the stored one. Fields added to wire.Batch later are covered too.
func TestCloneBatch(t *testing.T) {
	t.Parallel()
	var b wire.Batch
	fill(t, reflect.ValueOf(&b).Elem())
	c := cloneBatch(b)
	if !reflect.DeepEqual(b, c) {
		t.Fatalf("clone differs:\n%+v\nwant\n%+v", c, b)
	}
	if p := shared(reflect.ValueOf(b), reflect.ValueOf(c), "Batch"); p != "" {
		t.Errorf("clone shares %s with the original", p)
	}
	// nil stays nil and empty stays empty (metadata {} and errors.data []
	// are written differently from null).
	empty := wire.Batch{Metadata: wire.Metadata{}, Errors: &wire.BatchErrors{Data: []*wire.BatchError{}}}
	if c := cloneBatch(empty); c.Metadata == nil || c.Errors.Data == nil || c.RequestCounts != nil || c.CreatedAt != nil {
		t.Errorf("clone of empty parts: %+v", c)
	}
	if c := cloneBatch(wire.Batch{}); c.Metadata != nil || c.Errors != nil {
		t.Errorf("clone of nil parts: %+v", c)
	}
}
