using System.CommandLine;
using Fleet.Bench;

// `fleet-bench`: the benchmark of a running fleet, built beside the `fleet` CLI but not shipped with it. Settings come
// from the environment (ConnectionStrings__fleetdb, ConnectionStrings__rabbitmq), as written to .fleet/env by `make up`.
return await BenchCommand.Create().Parse(args).InvokeAsync();
