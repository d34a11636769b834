using Fleet.Client.Tls;
using Microsoft.Extensions.Options;

namespace Fleet.Api.Retention;

public static class RetentionExtensions
{
    /// <summary>
    /// Automatic retention: the <c>Retention</c> options with <c>ConnectionStrings:fleetdb_retention</c> (validated at
    /// start, against the <c>Tls</c> rules like <c>fleetdb</c>) and the pass loop, which does nothing unless
    /// <c>Retention:KeepDays</c> is set.
    /// </summary>
    public static IServiceCollection AddFleetRetention(this IServiceCollection services)
    {
        services.AddOptions<RetentionOptions>()
            .BindConfiguration(RetentionOptions.SectionName)
            .Configure<IConfiguration>((o, configuration) => o.ConnectionString = configuration.GetConnectionString(RetentionOptions.ConnectionStringName))
            .ValidateDataAnnotations()
            .Validate<IOptions<FleetTlsOptions>>(
                (o, tls) => o.KeepDays == 0 || string.IsNullOrWhiteSpace(o.ConnectionString) || tls.Value.PostgresProblem(o.ConnectionString) is null,
                $"ConnectionStrings:{RetentionOptions.ConnectionStringName} connects to a remote server with an SSL Mode that does not verify its " +
                "certificate. Use SSL Mode=VerifyFull (with Root Certificate=CA.pem for a private CA), or SSL Mode=Disable on a network you trust, " +
                "or set Tls:PostgresAllowUnverified=true, as for ConnectionStrings:fleetdb.")
            .ValidateOnStart();
        services.AddHostedService<AutoRetentionService>();
        return services;
    }
}
