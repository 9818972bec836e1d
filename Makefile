.PHONY: run test check install broker bench
ARGS ?=

run:      ## set up and run the whole fleet on demo orders (ARGS="--keep-running" to stay up)
	scripts/run $(ARGS)

test:     ## set up and run the test suite
	scripts/test $(ARGS)

check:    ## ruff, mypy and the import-layer contracts
	scripts/check

install:  ## create .venv and install woofleet into it
	scripts/install

broker:   ## make sure a local RabbitMQ with the management plugin runs
	scripts/install
	scripts/broker-up

bench:    ## run every benchmark, ending with one side-by-side table (ARGS=--quick for small counts)
	scripts/install
	scripts/broker-up
	scripts/bench $(ARGS)
