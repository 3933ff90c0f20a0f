package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/registry"
)

func registryCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Serve the schema topics as a read-only Confluent Schema Registry",
		Long: `Serve the pipeline's schema topics (its own <topic_prefix>._schemas and every sink's
schema_topics) through the read-only Confluent Schema Registry API: GET /schemas/ids/{id},
/subjects, /subjects/{subject}/versions and /subjects/{subject}/versions/{version|latest}.
With kafka.format avro-confluent, any Confluent-compatible client decodes the topics with it.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			listen, _ := cmd.Flags().GetString("listen")
			return runRegistry(cmd, listen)
		},
	}
	cmd.Flags().String("listen", "127.0.0.1:8081", "address of the registry API")
	return cmd
}

func runRegistry(cmd *cobra.Command, listen string) error {
	cfg, log, err := loadConfigAndLogger(cmd)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // nothing useful to do on exit
	kopts, err := kafka.ClientOpts(cfg.Kafka, nil)
	if err != nil {
		return usageError{err}
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("registry: listen on %s: %w", listen, err)
	}
	topics := allSchemaTopics(cfg)
	srv := &http.Server{Handler: registry.New(kopts, topics).Handler(), ReadHeaderTimeout: 10 * time.Second}
	// Tests and scripts read the address from this line (--listen 127.0.0.1:0 picks a port).
	fmt.Fprintf(cmd.OutOrStdout(), "registry listening on http://%s\n", ln.Addr())
	log.Info("schema registry API started", zap.String("address", ln.Addr().String()), zap.Strings("schema_topics", topics))
	go func() {
		<-cmd.Context().Done()
		ctx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
		defer cancel()
		_ = srv.Shutdown(ctx) // in-flight requests had their time
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("registry: serve on %s: %w", listen, err)
	}
	return nil
}
