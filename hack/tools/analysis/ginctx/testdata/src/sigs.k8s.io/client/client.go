// Package client stands in for controller-runtime's client.
package client

import "context"

type ObjectKey struct{ Namespace, Name string }

type Client interface {
	Get(ctx context.Context, key ObjectKey, obj any) error
}
