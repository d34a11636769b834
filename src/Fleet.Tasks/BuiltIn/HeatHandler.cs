using System.Buffers;
using System.Globalization;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text.Json.Serialization;

namespace Fleet.Tasks.BuiltIn;

/// <summary>
/// <c>heat</c>, the "weather model" (docs/task-types.md): an explicit 2D heat-diffusion stencil on an
/// <c>n</c> x <c>n</c> grid of doubles with the border held at 0, run for <c>steps</c> steps.
/// Output: <c>{"mean": x, "max": y}</c> over all n*n cells.
/// </summary>
/// <remarks>
/// Every cell update performs exactly the operations of the reference, in the same order and without fused
/// multiply-add, so the results match the Python implementation (bench/celery/workloads.py) bit for bit. The stencil runs
/// <see cref="Vector{T}"/> lanes side by side; lane-wise IEEE operations give the same result as the scalar loop.
/// The mean is summed sequentially, row by row, because reordering that sum would change the result.
/// </remarks>
public sealed class HeatHandler : CpuTaskHandler<HeatInput, HeatOutput>
{
    /// <summary>The type name.</summary>
    public const string TypeName = "heat";

    /// <summary>Largest accepted grid side: two 2048 x 2048 grids are 64 MiB.</summary>
    public const long MaxN = 2048;

    /// <summary>Largest accepted number of steps.</summary>
    public const long MaxSteps = 100_000;

    public override string Type => TypeName;

    protected override void Validate(HeatInput input)
    {
        TaskValidationException.ThrowIfOutOfRange(input.N, 3, MaxN, "n");
        TaskValidationException.ThrowIfOutOfRange(input.Steps, 0, MaxSteps, "steps");
    }

    protected override HeatOutput Execute(HeatInput input, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var n = (int)input.N;
        var steps = (int)input.Steps;
        var cells = n * n;
        var rentedU = ArrayPool<double>.Shared.Rent(cells);
        var rentedV = ArrayPool<double>.Shared.Rent(cells);
        try
        {
            var u = rentedU.AsSpan(0, cells);
            var v = rentedV.AsSpan(0, cells);
            Initialise(u, n, input.Seed);

            // The update below never writes the border, so v's border must start at 0 like u's.
            v.Clear();

            // Progress about every 1% of the steps: a grid step is thousands of cell updates, so a report (a dictionary
            // write in the worker) every hundredth of the run costs nothing measurable. Outside a worker there is no context.
            var context = TaskContext.Current;
            var reportEvery = Math.Max(1, steps / 100);
            for (var step = 0; step < steps; step++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                Step(u, v, n);
                var swap = u;
                u = v;
                v = swap;
                if (context is not null && (step + 1) % reportEvery == 0)
                {
                    context.ReportProgress((double)(step + 1) / steps, string.Create(CultureInfo.InvariantCulture, $"step {step + 1} of {steps}"));
                }
            }

            var sum = 0.0;
            var max = double.NegativeInfinity;
            foreach (var cell in u)
            {
                sum += cell;
                if (cell > max)
                {
                    max = cell;
                }
            }

            return new HeatOutput { Mean = sum / cells, Max = max };
        }
        finally
        {
            ArrayPool<double>.Shared.Return(rentedU);
            ArrayPool<double>.Shared.Return(rentedV);
        }
    }

    // Fully optimized at the first call instead of tier 0 first: a new worker otherwise spends its first seconds
    // running the stencil in unoptimized code (docs/decisions/0005).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Initialise(Span<double> u, int n, int seed)
    {
        u.Clear();

        // 64-bit arithmetic so seed*17 cannot overflow; the modulo is made non-negative like Python's.
        var seedTerm = (long)seed * 17;
        for (var i = 1; i < n - 1; i++)
        {
            var row = u.Slice(i * n, n);
            for (var j = 1; j < n - 1; j++)
            {
                var m = (((long)i * 131) + ((long)j * 71) + seedTerm) % 1000;
                if (m < 0)
                {
                    m += 1000;
                }

                row[j] = m / 1000.0;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Step(ReadOnlySpan<double> u, Span<double> v, int n)
    {
        var width = Vector<double>.Count;
        var vectorise = Vector.IsHardwareAccelerated;
        var vector01 = new Vector<double>(0.1);
        var vector4 = new Vector<double>(4.0);
        for (var i = 1; i < n - 1; i++)
        {
            var up = u.Slice((i - 1) * n, n);
            var row = u.Slice(i * n, n);
            var down = u.Slice((i + 1) * n, n);
            var output = v.Slice(i * n, n);
            var j = 1;
            if (vectorise)
            {
                ref var upRef = ref MemoryMarshal.GetReference(up);
                ref var rowRef = ref MemoryMarshal.GetReference(row);
                ref var downRef = ref MemoryMarshal.GetReference(down);
                ref var outRef = ref MemoryMarshal.GetReference(output);

                // A vector covers j .. j+width-1 and reads up to j+width, so j+width <= n-1 keeps it in the row.
                for (; j <= n - 1 - width; j += width)
                {
                    var index = (nuint)j;
                    var c = Vector.LoadUnsafe(ref rowRef, index);
                    var sum = ((Vector.LoadUnsafe(ref upRef, index) + Vector.LoadUnsafe(ref downRef, index))
                        + Vector.LoadUnsafe(ref rowRef, index - 1))
                        + Vector.LoadUnsafe(ref rowRef, index + 1);
                    var result = c + (vector01 * (sum - (vector4 * c)));
                    result.StoreUnsafe(ref outRef, index);
                }
            }

            for (; j < n - 1; j++)
            {
                var c = row[j];
                output[j] = c + (0.1 * ((((up[j] + down[j]) + row[j - 1]) + row[j + 1]) - (4.0 * c)));
            }
        }
    }
}

/// <summary>Input of <c>heat</c>: <c>{"n": 256, "steps": 1000, "seed": 0}</c>.</summary>
public sealed record HeatInput
{
    [JsonPropertyName("n")]
    public required long N { get; init; }

    [JsonPropertyName("steps")]
    public required long Steps { get; init; }

    [JsonPropertyName("seed")]
    public required int Seed { get; init; }
}

/// <summary>Output of <c>heat</c>.</summary>
public sealed record HeatOutput
{
    [JsonPropertyName("mean")]
    public required double Mean { get; init; }

    [JsonPropertyName("max")]
    public required double Max { get; init; }
}
