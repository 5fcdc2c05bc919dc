# BattleScope operator and developer targets. `make` (or `make help`) lists them.
# Variables: IMAGE (image to build/deploy), PLATFORMS (buildx), KUBECTL, NS.
IMAGE     ?= battlescope:latest
PLATFORMS ?= linux/amd64,linux/arm64
KUBECTL   ?= kubectl
NS        ?= battlescope
COMPOSE   ?= docker compose -f infra/docker-compose.yaml
K8S       := infra/k8s

.DEFAULT_GOAL := help
.PHONY: help build image image-multiarch test lint run demo docs check-infra compose-up compose-down k8s-init k8s-config k8s-deploy

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | awk -F'\t' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## Build the release binary with the Kafka bus (target/release/battlescope)
	cargo build --release -p battlescope --features kafka

image: ## Build the container image for this machine's platform
	docker build -t $(IMAGE) .

image-multiarch: ## Build and push the image for linux/amd64 and linux/arm64 (docker buildx)
	docker buildx build --platform $(PLATFORMS) -t $(IMAGE) --push .

test: ## Run the test suites (engine-backed suites need: eval "$$(scripts/engines.sh start)")
	cargo test --workspace
	cargo test -p battlescope --features kafka

lint: ## Formatting, clippy and the infrastructure checks
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	scripts/check-infra.sh

check-infra: ## Validate k8s manifests, compose file, Prometheus config, dashboards
	scripts/check-infra.sh

run: ## All services in one process, following the live feed (embedded storage)
	cargo run --release -p battlescope -- run

demo: ## All services in one process, offline, on bundled real data
	cargo run -p battlescope -- demo

docs: ## Regenerate docs/ops/configuration.md from `battlescope config`
	cargo run -q -p battlescope -- config | python3 docs/ops/gen-configuration.py > docs/ops/configuration.md

compose-up: ## Start the split deployment locally (Docker Compose)
	$(COMPOSE) up -d --build
	@echo "web: http://localhost:3000/  grafana: http://localhost:3030/  prometheus: http://localhost:9090/"

compose-down: ## Stop the Compose stack (keeps the volumes; add -v by hand to drop them)
	$(COMPOSE) down

k8s-init: ## First install: namespace, config, secrets placeholder, PostgreSQL/Redis/Redpanda/Typesense, databases
	$(KUBECTL) apply -f $(K8S)/00-namespace.yaml
	$(KUBECTL) apply -f $(K8S)/10-config.yaml
	$(KUBECTL) apply -f $(K8S)/20-postgres.yaml -f $(K8S)/21-redis.yaml -f $(K8S)/22-redpanda.yaml -f $(K8S)/23-typesense.yaml
	$(KUBECTL) -n $(NS) rollout status statefulset/postgres --timeout=300s
	$(KUBECTL) apply -f $(K8S)/30-create-databases-job.yaml
	$(KUBECTL) -n $(NS) wait --for=condition=complete job/create-databases --timeout=300s

k8s-config: ## (Re)create the observability ConfigMaps from infra/prometheus, infra/grafana, infra/loki
	$(KUBECTL) -n $(NS) create configmap prometheus-config --from-file=infra/prometheus/prometheus.k8s.yml --from-file=infra/prometheus/rules.yml --dry-run=client -o yaml | $(KUBECTL) apply -f -
	$(KUBECTL) -n $(NS) create configmap grafana-datasources --from-file=infra/grafana/provisioning/datasources/datasources.k8s.yaml --dry-run=client -o yaml | $(KUBECTL) apply -f -
	$(KUBECTL) -n $(NS) create configmap grafana-providers --from-file=infra/grafana/provisioning/dashboards/providers.yaml --dry-run=client -o yaml | $(KUBECTL) apply -f -
	$(KUBECTL) -n $(NS) create configmap grafana-dashboards --from-file=infra/grafana/dashboards/ --dry-run=client -o yaml | $(KUBECTL) apply -f -
	$(KUBECTL) -n $(NS) create configmap loki-config --from-file=infra/loki/loki.yaml --from-file=infra/loki/promtail.k8s.yaml --dry-run=client -o yaml | $(KUBECTL) apply -f -

k8s-deploy: k8s-config ## Deploy or upgrade every service (init containers migrate first), then wait for the rollouts
	$(KUBECTL) apply -f $(K8S)/40-services.yaml -f $(K8S)/50-observability.yaml
	$(KUBECTL) -n $(NS) set image deployment -l app.kubernetes.io/name=battlescope '*=$(IMAGE)'
	for d in authentication ingestion enrichment battle search web; do \
	  $(KUBECTL) -n $(NS) rollout status deployment/$$d --timeout=300s || exit 1; \
	done
