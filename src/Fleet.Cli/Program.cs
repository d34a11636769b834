using System.CommandLine;
using Fleet.Cli;

// The `fleet` command. Settings come from the environment (ConnectionStrings__fleetdb, ConnectionStrings__rabbitmq),
// as written to .fleet/env by `make up`.
var root = new RootCommand("Fleet: submit tasks, watch them, requeue final ones, inspect workers, migrate the database, delete old results (retention), pause and resume lanes, move the lanes to another queue type, manage recurring schedules and rate and concurrency limits, list, replay or discard dead letters.")
{
    SubmitCommand.Create(),
    StatusCommand.Create(),
    WorkersCommand.Create(),
    MigrateCommand.Create(),
    RetentionCommand.Create(),
    QueuesCommand.Create(),
    QueueCommand.Create(),
    DemoCommand.Create(),
    ScheduleCommand.Create(),
    LimitCommand.Create(),
    DeadLettersCommand.Create(),
    RequeueCommand.Create(),
};
return await root.Parse(args).InvokeAsync();
