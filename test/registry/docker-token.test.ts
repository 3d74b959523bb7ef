/** The docker:// transport against a token docker-registry. */
import { dockerTransportSuite } from "./docker-suite.js";

dockerTransportSuite("token");
