using Fleet.Tasks.BuiltIn;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Fleet.Tasks;

public static class TaskServiceCollectionExtensions
{
    /// <summary>
    /// Registers the handler registry and the built-in types (<c>noop</c>, <c>sha256</c>, <c>sieve</c>,
    /// <c>sleep</c>, <c>heat</c>, <c>http-get</c>). <c>http-get</c> only fetches the hosts listed in
    /// <see cref="HttpGetOptions.AllowedHosts"/>, at the addresses <see cref="HttpGetTargetGuard"/> permits,
    /// configured by the host (<c>Worker:HttpGet</c>).
    /// </summary>
    public static IServiceCollection AddFleetTasks(this IServiceCollection services)
    {
        services.TryAddSingleton<TaskHandlerRegistry>();
        services.AddTaskHandler<NoopHandler>();
        services.AddTaskHandler<Sha256Handler>();
        services.AddTaskHandler<SieveHandler>();
        services.AddTaskHandler<SleepHandler>();
        services.AddTaskHandler<HeatHandler>();
        // The factory's default loggers write each request's URL at Information; a URL from a payload may carry a
        // path or query that is the sender's secret, so this client logs nothing (the handler reports a scrubbed form).
        services.AddHttpClient(HttpGetHandler.HttpClientName)
            .RemoveAllLoggers()
            .ConfigurePrimaryHttpMessageHandler(services => new SocketsHttpHandler
            {
                // Redirects could lead off the allow-list; the handler follows none and reports the 3xx as is.
                AllowAutoRedirect = false,
                PooledConnectionLifetime = TimeSpan.FromMinutes(5),

                // Every connection goes to an address the guard checked, never through a proxy (HTTP_PROXY), whose
                // address is all the guard would see.
                ConnectCallback = HttpGetTargetGuard.Create(services.GetRequiredService<IOptions<HttpGetOptions>>().Value).ConnectAsync,
                UseProxy = false,
            });
        services.AddTaskHandler<HttpGetHandler>();
        return services;
    }

    /// <summary>Registers a task type from any assembly. Handlers are singletons and must be thread-safe.</summary>
    public static IServiceCollection AddTaskHandler<THandler>(this IServiceCollection services)
        where THandler : class, ITaskHandler
    {
        services.TryAddEnumerable(ServiceDescriptor.Singleton<ITaskHandler, THandler>());
        return services;
    }
}
