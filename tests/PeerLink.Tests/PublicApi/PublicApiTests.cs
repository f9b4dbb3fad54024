using System;
using System.Linq;
using System.Reflection;
using Xunit;

namespace PeerLink.Tests.PublicApi;

/// <summary>
/// Rules for the public surface that the build does not enforce. The surface itself is tracked by
/// Microsoft.CodeAnalysis.PublicApiAnalyzers in each library's PublicAPI.Shipped.txt / PublicAPI.Unshipped.txt, so an
/// undeclared change fails the build (eng/update-public-api.sh writes the change into the files for review).
/// </summary>
public sealed class PublicApiTests
{
    [Theory]
    [InlineData("PeerLink")]
    [InlineData("PeerLink.Nat")]
    [InlineData("PeerLink.Discovery")]
    [InlineData("PeerLink.Rendezvous.Nats")]
    public void PublicClassesAreSealedOrStatic(string assemblyName)
    {
        // Abstract classes are allowed only when no other assembly can derive from them (no public or protected constructor).
        Type[] open = Assembly.Load(assemblyName).GetExportedTypes()
            .Where(t => t.IsClass && !t.IsSealed && !(t.IsAbstract && t.IsSealed))
            .Where(t => !t.IsAbstract || t.GetConstructors(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance).Any(c => c.IsPublic || c.IsFamily || c.IsFamilyOrAssembly))
            .ToArray();
        Assert.Empty(open);
    }
}
