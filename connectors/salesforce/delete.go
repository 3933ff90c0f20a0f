package salesforce

import (
	"context"
	"net/http"
	"net/url"

	"golang.org/x/sync/errgroup"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// deleteRecords deletes each record by external id, DELETE /sobjects/{SObject}/{field}/{value},
// up to max_concurrency requests at a time. A record that is not there (404) counts as deleted:
// a replayed delete is harmless. Other refusals (e.g. 300 when several records share the id,
// 400 ENTITY_IS_DELETED, 403 INSUFFICIENT_ACCESS_OR_READONLY) reject that record only.
func (c *connector) deleteRecords(ctx context.Context, recs []prepared) ([]sink.RecordError, error) {
	failed := make([]*sink.RecordError, len(recs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.cfg.maxConcurrency)
	for k, pr := range recs {
		g.Go(func() error {
			var err error
			failed[k], err = c.deleteOne(gctx, pr)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var out []sink.RecordError
	for _, f := range failed {
		if f != nil {
			out = append(out, *f)
		}
	}
	return out, nil
}

// deleteOne deletes one record; it returns the record's rejection or a batch error.
func (c *connector) deleteOne(ctx context.Context, pr prepared) (*sink.RecordError, error) {
	path := "/sobjects/" + c.cfg.sobject + "/" + c.cfg.externalID + "/" + url.PathEscape(pr.extID)
	_, err := c.do(ctx, apiRequest{method: "DELETE", path: path})
	if err == nil {
		return nil, nil
	}
	e, permanent := isAPIError(err)
	switch {
	case !permanent:
		return nil, err
	case e.Status == http.StatusNotFound:
		return nil, nil
	}
	return &sink.RecordError{Index: pr.index, Reason: "salesforce refused the delete: " + e.Error()}, nil
}
