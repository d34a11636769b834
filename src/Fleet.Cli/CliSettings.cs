using Fleet.Client;
using Microsoft.Extensions.Configuration;

namespace Fleet.Cli;

/// <summary>Configuration of the CLI: environment variables, then an optional appsettings.json beside the binary.</summary>
internal static class CliSettings
{
    public static IConfiguration Configuration { get; } = new ConfigurationBuilder()
        .AddJsonFile(Path.Combine(AppContext.BaseDirectory, "appsettings.json"), optional: true)
        .AddEnvironmentVariables()
        .Build();

    public static string PostgresConnectionString => Required("fleetdb");

    public static string RabbitMqUri => Required("rabbitmq");

    public static FleetClient CreateClient() => new(new FleetClientOptions
    {
        PostgresConnectionString = Required("fleetdb"),
        RabbitMqUri = Required("rabbitmq"),
    });

    private static string Required(string name)
    {
        var value = Configuration.GetConnectionString(name);
        return string.IsNullOrWhiteSpace(value)
            ? throw new CliException($"ConnectionStrings__{name} is not set. Run `make up` and `. .fleet/env`, or export it.")
            : value;
    }
}

/// <summary>A user-facing error: printed without a stack trace, exit code 2.</summary>
internal sealed class CliException(string message) : Exception(message)
{
    public CliException()
        : this("The command failed.")
    {
    }

    public CliException(string message, Exception innerException)
        : this(message + " " + innerException.Message)
    {
    }
}
