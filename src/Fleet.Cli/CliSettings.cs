using System.ComponentModel.DataAnnotations;
using Fleet.Client;
using Fleet.Client.Tls;
using Microsoft.Extensions.Configuration;

namespace Fleet.Cli;

/// <summary>Configuration of the CLI: environment variables, then an optional appsettings.json beside the binary.</summary>
internal static class CliSettings
{
    public static IConfiguration Configuration { get; } = new ConfigurationBuilder()
        .AddJsonFile(Path.Combine(AppContext.BaseDirectory, "appsettings.json"), optional: true)
        .AddEnvironmentVariables()
        .Build();

    /// <summary><c>ConnectionStrings__fleetdb</c>, refused (as by every Fleet process) when it would not verify a remote server.</summary>
    public static string PostgresConnectionString
    {
        get
        {
            var value = Required("fleetdb");
            var tls = Tls();
            if (tls.PostgresProblem(value) is { } problem)
            {
                throw new CliException(problem);
            }

            if (tls.PostgresAllowUnverified && FleetTlsOptions.IsUnverifiedPostgres(value))
            {
                Console.Error.WriteLine("fleet: warning: Tls:PostgresAllowUnverified is on: the database's certificate is not verified.");
            }

            return value;
        }
    }

    public static string RabbitMqUri => Required("rabbitmq");

    public static FleetClient CreateClient()
    {
        var options = new FleetClientOptions { PostgresConnectionString = PostgresConnectionString, RabbitMqUri = RabbitMqUri };
        Configuration.GetSection(FleetTlsOptions.SectionName).Bind(options.Tls);
        try
        {
            options.QueueType = QueueTopology.ParseQueueType(Configuration[QueueTopology.QueueTypeKey]);
        }
        catch (FormatException ex)
        {
            throw new CliException(ex.Message);
        }

        if (options.Tls.RabbitMqAllowUntrusted && RabbitMqAddress.Parse(options.RabbitMqUri).UseTls)
        {
            Console.Error.WriteLine("fleet: warning: Tls:RabbitMqAllowUntrusted is on: the broker's certificate is not checked.");
        }

        try
        {
            return new FleetClient(options);
        }
        catch (ValidationException ex)
        {
            throw new CliException(ex.Message);
        }
    }

    /// <summary>The <c>Tls</c> section (Tls__RabbitMqCaFile, ...), validated.</summary>
    private static FleetTlsOptions Tls()
    {
        var tls = Configuration.GetSection(FleetTlsOptions.SectionName).Get<FleetTlsOptions>() ?? new FleetTlsOptions();
        var problems = tls.Validate(new ValidationContext(tls)).Select(r => r.ErrorMessage).ToList();
        return problems.Count == 0 ? tls : throw new CliException(string.Join(" ", problems));
    }

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
