using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Fleet.Client;

public static class FleetClientServiceCollectionExtensions
{
    /// <summary>
    /// Registers a singleton <see cref="FleetClient"/> configured from <c>ConnectionStrings:fleetdb</c> and
    /// <c>ConnectionStrings:rabbitmq</c>, the <c>Tls</c> section and <c>RabbitMq:QueueType</c>; missing or invalid values fail at start with the
    /// config path named.
    /// </summary>
    public static IServiceCollection AddFleetClient(
        this IServiceCollection services, IConfiguration configuration, Action<FleetClientOptions>? configure = null)
    {
        services.AddOptions<FleetClientOptions>()
            .Configure(options =>
            {
                options.PostgresConnectionString = configuration.GetConnectionString("fleetdb") ?? "";
                options.RabbitMqUri = configuration.GetConnectionString("rabbitmq") ?? "";
                configuration.GetSection(Tls.FleetTlsOptions.SectionName).Bind(options.Tls);
                options.QueueType = QueueTopology.ParseQueueType(configuration[QueueTopology.QueueTypeKey]);
                configure?.Invoke(options);
            })
            .ValidateDataAnnotations()
            .ValidateOnStart();
        services.AddSingleton(sp => new FleetClient(sp.GetRequiredService<IOptions<FleetClientOptions>>().Value));
        return services;
    }
}
